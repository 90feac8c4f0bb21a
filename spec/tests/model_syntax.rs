//! Short and long syntaxes of each attribute give the same canonical value; string forms of
//! numbers and booleans are accepted where the specification allows them.

use std::path::Path;

use berth_spec::model::{Condition, DeviceCount, Service, Ulimit};
use berth_spec::{App, Location};
use indexmap::IndexMap;

fn load_with_env(yaml: &str, env: &[(&str, &str)]) -> App {
    let env: IndexMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    match App::from_document("proj", Path::new("/work/proj"), &env, doc, &|_| {
        Location::file("compose.yaml")
    }) {
        Ok((app, _)) => app,
        Err(e) => panic!("{yaml}\n{e}"),
    }
}

/// Loads a one-service project whose `web` service has the given extra attributes.
fn web(attrs: &str) -> Service {
    let yaml = format!("services:\n  web:\n    image: busybox\n{}", indent(attrs));
    let mut app = load_with_env(&yaml, &[("HOME", "/home/me")]);
    app.services.swap_remove("web").unwrap()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// Asserts that every form in `forms` gives the same service as the first.
fn same(forms: &[&str]) -> Service {
    let first = web(forms[0]);
    for f in &forms[1..] {
        assert_eq!(web(f), first, "{f}\nvs\n{}", forms[0]);
    }
    first
}

#[test]
fn depends_on_list_and_map() {
    let yaml = |deps: &str| {
        format!("services:\n  db: {{image: pg}}\n  web:\n    image: a\n    depends_on: {deps}\n")
    };
    let short = load_with_env(&yaml("[db]"), &[]);
    let long = load_with_env(&yaml("{db: {condition: service_started}}"), &[]);
    let full = load_with_env(
        &yaml("{db: {condition: service_started, required: true, restart: false}}"),
        &[],
    );
    assert_eq!(short, long);
    assert_eq!(short, full);
    let d = &short.services["web"].depends_on["db"];
    assert_eq!(
        (d.condition, d.required, d.restart),
        (Condition::ServiceStarted, true, false)
    );
    let healthy = load_with_env(
        &yaml("{db: {condition: service_healthy, restart: 'true'}}"),
        &[],
    );
    let d = &healthy.services["web"].depends_on["db"];
    assert_eq!((d.condition, d.restart), (Condition::ServiceHealthy, true));
}

#[test]
fn environment_labels_sysctls_list_and_map() {
    let s = same(&[
        "environment: [A=1, B=x=y, C]\nlabels: [l1=a, l2]\nsysctls: [net.core.somaxconn=1024]",
        "environment: {A: 1, B: x=y, C: null}\nlabels: {l1: a, l2: ''}\nsysctls: {net.core.somaxconn: 1024}",
        "environment: {A: '1', B: 'x=y', C: }\nlabels: {l1: a, l2: }\nsysctls: {net.core.somaxconn: '1024'}",
    ]);
    assert_eq!(s.environment["A"].as_deref(), Some("1"));
    assert_eq!(s.environment["B"].as_deref(), Some("x=y"));
    assert_eq!(s.environment["C"], None);
    assert_eq!(s.labels["l2"], "");
}

#[test]
fn bare_environment_key_takes_the_project_environment() {
    let app = load_with_env(
        "services: {web: {image: a, environment: [TOKEN, UNSET]}}",
        &[("TOKEN", "s3cret")],
    );
    let env = &app.services["web"].environment;
    assert_eq!(env["TOKEN"].as_deref(), Some("s3cret"));
    assert_eq!(env["UNSET"], None);
    assert!(app.to_yaml().contains("UNSET: null"));
}

#[test]
fn command_and_entrypoint_string_or_list() {
    let s = same(&[
        "command: sh -c 'echo hi'\nentrypoint: /init --flag",
        "command: [sh, -c, echo hi]\nentrypoint: [/init, --flag]",
    ]);
    assert_eq!(s.command.unwrap(), ["sh", "-c", "echo hi"]);
}

#[test]
fn ports_short_and_long() {
    let s = same(&[
        "ports: ['127.0.0.1:8080:80/udp']",
        "ports: [{target: 80, published: 8080, host_ip: 127.0.0.1, protocol: udp}]",
        "ports: [{target: '80', published: '8080', host_ip: 127.0.0.1, protocol: udp, mode: ingress}]",
    ]);
    assert_eq!(s.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(s.ports[0].mode.as_deref(), Some("ingress"));
    let n = web("ports: [3000, '4000-4001']");
    let targets: Vec<u32> = n.ports.iter().map(|p| p.target).collect();
    assert_eq!(targets, [3000, 4000, 4001]);
}

#[test]
fn volumes_short_and_long() {
    let yaml = |v: &str| {
        format!("services:\n  web:\n    image: a\n    volumes: {v}\nvolumes: {{data: {{}}}}\n")
    };
    let short = load_with_env(
        &yaml("['./src:/app:ro', 'data:/data:nocopy', '/cache']"),
        &[],
    );
    let long = load_with_env(
        &yaml(
            "[{type: bind, source: ./src, target: /app, read_only: true, bind: {create_host_path: true}}, \
             {type: volume, source: data, target: /data, volume: {nocopy: true}}, \
             {type: volume, target: /cache, volume: {}}]",
        ),
        &[],
    );
    assert_eq!(short, long);
    let v = &short.services["web"].volumes;
    assert_eq!(v[0].source.as_deref(), Some("/work/proj/src"));
    assert!(v[0].read_only);
    assert!(v[1].volume.as_ref().unwrap().nocopy);
    let t = web("volumes: [{type: tmpfs, target: /tmp, tmpfs: {size: 64m, mode: 1777}}]");
    assert_eq!(
        t.volumes[0].tmpfs.as_ref().unwrap().size.unwrap().0,
        64 << 20
    );
}

#[test]
fn home_is_expanded_in_bind_sources() {
    let s = web("volumes: ['~/.config:/cfg']");
    assert_eq!(s.volumes[0].source.as_deref(), Some("/home/me/.config"));
}

#[test]
fn healthcheck_forms() {
    let s = same(&[
        "healthcheck: {test: 'curl -f localhost', interval: 30s, retries: 3}",
        "healthcheck: {test: [CMD-SHELL, curl -f localhost], interval: 30s, retries: '3'}",
    ]);
    let hc = s.healthcheck.unwrap();
    assert_eq!(hc.interval.unwrap().0.as_secs(), 30);
    assert_eq!(hc.retries, Some(3));
    let none = web("healthcheck: {test: [NONE]}");
    assert_eq!(none.healthcheck.unwrap().test.unwrap(), ["NONE"]);
    let off = web("healthcheck: {disable: 'true'}");
    assert!(off.healthcheck.unwrap().disable);
}

#[test]
fn extra_hosts_list_and_map() {
    let s = same(&[
        "extra_hosts: ['db:10.0.0.2', 'v6=::1', 'multi=1.1.1.1,2.2.2.2']",
        "extra_hosts: {db: 10.0.0.2, v6: '::1', multi: [1.1.1.1, 2.2.2.2]}",
    ]);
    assert_eq!(s.extra_hosts.0["multi"], ["1.1.1.1", "2.2.2.2"]);
}

#[test]
fn ulimits_single_or_pair() {
    let s = web("ulimits: {nproc: 65535, nofile: {soft: '1024', hard: 2048}}");
    assert_eq!(s.ulimits["nproc"], Ulimit::Single(65535));
    assert_eq!(
        (s.ulimits["nofile"].soft(), s.ulimits["nofile"].hard()),
        (1024, 2048)
    );
}

#[test]
fn build_string_or_long() {
    let s = same(&[
        "build: ./app",
        "build: {context: ./app, dockerfile: Dockerfile}",
    ]);
    let b = s.build.unwrap();
    assert_eq!(b.context.as_deref(), Some("/work/proj/app"));
    let long = web(
        "build:\n  context: https://github.com/x/y.git\n  args: [A=1, B]\n  ssh: [default, key=/k]\n  \
         cache_from: [a]\n  shm_size: 2g\n  no_cache: 'true'\n  ulimits: {nofile: 10}\n  x-b: 1",
    );
    let b = long.build.unwrap();
    assert_eq!(b.context.as_deref(), Some("https://github.com/x/y.git"));
    assert_eq!(b.args.len(), 1, "unset bare build args are dropped");
    assert_eq!(b.shm_size.unwrap().0, 2 << 30);
    assert!(b.no_cache);
    assert_eq!(b.ssh.0["key"].as_deref(), Some("/k"));
}

#[test]
fn tmpfs_dns_string_or_list() {
    let s = same(&["tmpfs: /run\ndns: 8.8.8.8", "tmpfs: [/run]\ndns: [8.8.8.8]"]);
    assert_eq!(s.tmpfs, ["/run"]);
}

#[test]
fn devices_short_and_long() {
    let s = same(&[
        "devices: ['/dev/fuse', '/dev/sda:/dev/xvda:r']",
        "devices: [{source: /dev/fuse, target: /dev/fuse, permissions: rwm}, {source: /dev/sda, target: /dev/xvda, permissions: r}]",
    ]);
    assert_eq!(s.devices.len(), 2);
}

#[test]
fn networks_list_or_map() {
    let yaml = |n: &str| {
        format!(
            "services:\n  web:\n    image: a\n    networks: {n}\nnetworks: {{front: {{}}, back: {{}}}}\n"
        )
    };
    let list = load_with_env(&yaml("[front, back]"), &[]);
    let map = load_with_env(&yaml("{front: , back: null}"), &[]);
    assert_eq!(list, map);
    let full = load_with_env(
        &yaml(
            "{front: {aliases: [w], ipv4_address: 172.20.0.5, priority: '10', gw_priority: 1, mac_address: 02:42:ac:11:00:02, interface_name: eth1, link_local_ips: [169.254.0.5], driver_opts: {mtu: 1400}}}",
        ),
        &[],
    );
    let n = full.services["web"].networks["front"].clone().unwrap();
    assert_eq!(n.priority, 10);
    assert_eq!(n.driver_opts["mtu"], "1400");
}

#[test]
fn secrets_and_configs_short_and_long() {
    let yaml = |s: &str| {
        format!(
            "services:\n  web:\n    image: a\n    secrets: {s}\nsecrets: {{pw: {{file: ./pw.txt}}}}\n"
        )
    };
    let short = load_with_env(&yaml("[pw]"), &[]);
    let long = load_with_env(&yaml("[{source: pw, target: /run/secrets/pw}]"), &[]);
    assert_eq!(short, long);
    let mode = load_with_env(&yaml("[{source: pw, mode: '0440', uid: '1000'}]"), &[]);
    assert_eq!(mode.services["web"].secrets[0].mode.unwrap().0, 0o440);
    assert_eq!(
        short.secrets["pw"].file.as_deref(),
        Some("/work/proj/pw.txt")
    );
}

#[test]
fn deploy_full() {
    let s = web(
        "deploy:\n  mode: replicated\n  replicas: '3'\n  endpoint_mode: dnsrr\n  labels: [a=b]\n  \
         resources:\n    limits: {cpus: '0.5', memory: 1g, pids: 100}\n    \
         reservations: {memory: 512m, devices: [{capabilities: [gpu], driver: nvidia}], \
         generic_resources: [{discrete_resource_spec: {kind: ssd, value: 1}}]}\n  \
         placement: {constraints: [node.role==manager], preferences: [{spread: node.labels.zone}], max_replicas_per_node: 2}\n  \
         restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}\n  \
         update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 1m, max_failure_ratio: '0.1'}\n  \
         rollback_config: {parallelism: 1, order: stop-first}",
    );
    let d = s.deploy.unwrap();
    assert_eq!(d.replicas, Some(3));
    let limits = d.resources.limits.unwrap();
    assert_eq!(limits.cpus, Some(0.5));
    assert_eq!(limits.memory.unwrap().0, 1 << 30);
    let res = d.resources.reservations.unwrap();
    assert_eq!(
        res.devices[0].count,
        Some(DeviceCount::All),
        "count defaults to all"
    );
    assert_eq!(d.placement.max_replicas_per_node, Some(2));
    assert_eq!(
        d.restart_policy.unwrap().window.unwrap().to_string(),
        "2m0s"
    );
    assert_eq!(d.update_config.unwrap().max_failure_ratio, Some(0.1));
}

#[test]
fn string_forms_of_numbers_and_booleans() {
    let s = same(&[
        "privileged: true\ntty: true\ncpus: 0.5\ncpu_shares: 512\nscale: 2\noom_score_adj: -100\nmem_limit: 1073741824\ninit: false",
        "privileged: 'true'\ntty: 'True'\ncpus: '0.5'\ncpu_shares: '512'\nscale: '2'\noom_score_adj: '-100'\nmem_limit: 1g\ninit: 'false'",
    ]);
    assert_eq!(s.cpus, Some(0.5));
    assert_eq!(s.init, Some(false));
    assert_eq!(s.replicas(), 2);
}

#[test]
fn gpus_all_or_list() {
    let s = web("gpus: all");
    assert_eq!(s.gpus[0].count, Some(DeviceCount::All));
    let l = web("gpus: [{driver: nvidia, count: 2, capabilities: [gpu]}]");
    assert_eq!(l.gpus[0].count, Some(DeviceCount::Count(2)));
}

#[test]
fn every_remaining_attribute_types() {
    let s = web(
        "annotations: {a: b}\nattach: false\nblkio_config: {weight: 300, device_read_bps: [{path: /dev/sda, rate: 1mb}], weight_device: [{path: /dev/sda, weight: 400}]}\n\
         cap_add: [NET_ADMIN]\ncap_drop: [ALL]\ncgroup: private\ncgroup_parent: p\ncpu_count: 2\ncpu_percent: 50\ncpu_period: 100000\ncpu_quota: 50000\n\
         cpu_rt_period: 1000000\ncpu_rt_runtime: 950ms\ncpuset: 0-1\ncredential_spec: {file: x.json}\ndevice_cgroup_rules: ['c 1:3 mr']\ndns_opt: [use-vc]\ndns_search: example.com\n\
         domainname: example.com\nenv_file: [.env, {path: ./opt.env, required: false}]\nexpose: [80, '443/tcp']\nexternal_links: [redis_1]\ngroup_add: [mail]\nhostname: h\n\
         ipc: shareable\nisolation: default\nlabel_file: ./labels\nlogging: {driver: json-file, options: {max-size: 10m, max-file: 3}}\nmac_address: 02:42:ac:11:00:02\n\
         mem_reservation: 512m\nmem_swappiness: 60\nmemswap_limit: 2g\noom_kill_disable: true\npid: host\npids_limit: 100\nplatform: linux/amd64\npull_policy: if_not_present\n\
         read_only: true\nrestart: on-failure:3\nruntime: runc\nsecurity_opt: [no-new-privileges:true]\nshm_size: 64m\nstdin_open: true\nstop_grace_period: 1m30s\nstop_signal: SIGTERM\n\
         storage_opt: {size: 20G}\nuser: '1000:1000'\nuserns_mode: host\nuts: host\nworking_dir: /app\nuse_api_socket: true\nprofiles: [debug]\n\
         post_start: [{command: echo started, user: root}]\npre_stop: [{command: [echo, bye]}]\npre_start: [{command: migrate, per_replica: true}]\n\
         develop: {watch: [{path: ./src, action: sync, target: /app, ignore: node_modules}]}\nprovider: {type: model, options: {model: ai/x, flags: [a, b]}}\n\
         pull_refresh_after: 1h",
    );
    assert_eq!(s.cpu_rt_runtime, 950_000);
    assert_eq!(s.pull_policy.as_deref(), Some("missing"));
    assert_eq!(s.env_file[0].path, "/work/proj/.env");
    assert!(!s.env_file[1].required);
    assert_eq!(s.stop_grace_period.unwrap().to_string(), "1m30s");
    assert_eq!(
        s.pre_start[0].image.as_deref(),
        Some("busybox"),
        "pre_start inherits the image"
    );
    assert_eq!(s.logging.unwrap().options["max-file"], "3");
    assert_eq!(s.blkio_config.unwrap().device_read_bps[0].rate.0, 1 << 20);
}

#[test]
fn models_list_or_map() {
    let yaml = |m: &str| {
        format!(
            "services:\n  web:\n    image: a\n    models: {m}\nmodels: {{llm: {{model: ai/smollm2, context_size: '4096'}}}}\n"
        )
    };
    let list = load_with_env(&yaml("[llm]"), &[]);
    let map = load_with_env(&yaml("{llm: }"), &[]);
    assert_eq!(list, map);
    let vars = load_with_env(&yaml("{llm: {endpoint_var: URL, model_var: NAME}}"), &[]);
    let m = vars.services["web"].models["llm"].clone().unwrap();
    assert_eq!(m.endpoint_var.as_deref(), Some("URL"));
    assert_eq!(vars.models["llm"].context_size, Some(4096));
}
