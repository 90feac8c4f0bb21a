//! Each validation and typing error: its message and the key path handed to `locate`.

use std::path::Path;

use berth_spec::path::DisplayPath;
use berth_spec::{App, Error, Location};
use indexmap::IndexMap;

/// Loads `yaml`; `locate` records the key path as the "file", so the test sees exactly
/// which path the error was located at.
fn load(yaml: &str) -> Result<App, Error> {
    let env = IndexMap::new();
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    App::from_document("p", Path::new("/p"), &env, doc, &|path| {
        Location::file(DisplayPath(path).to_string())
    })
    .map(|(app, _)| app)
}

fn invalid(yaml: &str) -> (String, String) {
    match load(yaml) {
        Err(Error::Invalid { location, message }) => (location.file.display().to_string(), message),
        Err(Error::UnknownKey { location, key }) => (
            location.file.display().to_string(),
            format!("unknown key {key}"),
        ),
        other => panic!("expected an error for\n{yaml}\ngot {other:?}"),
    }
}

#[test]
fn validation_errors_table() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "services: {web: {build: .}, api: {}}",
            "services.api",
            "service \"api\" has neither an image nor a build context specified",
        ),
        (
            "services: {web: {image: a, networks: [front]}}",
            "services.web.networks.front",
            "service \"web\" refers to undefined network front",
        ),
        (
            "services: {web: {image: a, volumes: ['data:/d']}}",
            "services.web.volumes[0]",
            "service \"web\" refers to undefined volume data",
        ),
        (
            "services: {web: {image: a, secrets: [s]}}",
            "services.web.secrets[0]",
            "service \"web\" refers to undefined secret s",
        ),
        (
            "services: {web: {image: a, configs: [{source: c}]}}",
            "services.web.configs[0]",
            "service \"web\" refers to undefined config c",
        ),
        (
            "services: {web: {image: a, depends_on: [db]}}",
            "services.web.depends_on.db",
            "service \"web\" depends on undefined service \"db\"",
        ),
        (
            "services: {web: {image: a, links: ['db:database']}}",
            "services.web.links[0]",
            "service \"web\" links to undefined service \"db\"",
        ),
        (
            "services: {web: {image: a, volumes_from: ['db:ro']}}",
            "services.web.volumes_from[0]",
            "service \"web\" mounts volumes from undefined service \"db\"",
        ),
        (
            "services: {web: {image: a, network_mode: 'service:vpn'}}",
            "services.web.network_mode",
            "service \"vpn\" not found for network_mode 'service:vpn'",
        ),
        (
            "services: {web: {image: a, network_mode: host, networks: [default]}}",
            "services.web.network_mode",
            "service web declares mutually exclusive `network_mode` and `networks`",
        ),
        (
            "services: {web: {image: a, container_name: w1, scale: 2}}",
            "services.web.container_name",
            "can't set container_name and scale as container name must be unique",
        ),
        (
            "services: {web: {image: a, container_name: w1, deploy: {replicas: 3}}}",
            "services.web.container_name",
            "can't set container_name and deploy.replicas as container name must be unique",
        ),
        (
            "services: {web: {image: a, mem_limit: 256m, mem_reservation: 512m}}",
            "services.web.mem_reservation",
            "mem_reservation (536870912) must not be greater than mem_limit (268435456)",
        ),
        (
            "services: {web: {image: a, scale: 2, deploy: {replicas: 3}}}",
            "services.web",
            "can't set distinct values on 'scale' and 'deploy.replicas'",
        ),
        (
            "services: {'my app': {image: a}}",
            "services.my app",
            "invalid service name \"my app\": only [a-zA-Z0-9._-] characters are allowed",
        ),
        (
            "services: {web: {image: a}}\nnetworks: {'bad/net': {}}",
            "networks.bad/net",
            "invalid network name \"bad/net\": only [a-zA-Z0-9._-] characters are allowed",
        ),
        (
            "services: {web: {image: a, container_name: '-x'}}",
            "services.web.container_name",
            "invalid container name \"-x\": only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed",
        ),
        (
            "services: {web: {image: a, ports: ['8000-8002:80-81']}}",
            "services.web.ports[0]",
            "invalid ranges specified for container and host Ports: 80-81 and 8000-8002",
        ),
        (
            "services: {web: {image: a, ports: ['80:70000']}}",
            "services.web.ports[0]",
            "invalid containerPort: 70000",
        ),
        (
            "services: {web: {image: a, ports: [{target: 80, published: '90000'}]}}",
            "services.web.ports[0].published",
            "invalid hostPort: 90000",
        ),
        (
            "services: {web: {image: a, ports: [{target: 80, host_ip: 'x.y'}]}}",
            "services.web.ports[0].host_ip",
            "invalid ip address: x.y",
        ),
        (
            "services: {web: {image: a, healthcheck: {test: [curl, x]}}}",
            "services.web.healthcheck.test",
            "healthcheck.test must start either by \"CMD\", \"CMD-SHELL\" or \"NONE\"",
        ),
        (
            "services: {web: {image: a, restart: sometimes}}",
            "services.web.restart",
            "invalid restart policy \"sometimes\": must be no, always, on-failure[:max-retries] or unless-stopped",
        ),
        (
            "services: {web: {image: a, volumes: ['/a:/data', '/b:/data/']}}",
            "services.web.volumes[1]",
            "target /data already mounted as services.web.volumes[0]",
        ),
        (
            "services: {web: {image: a}}\nsecrets: {s: {}}",
            "secrets.s",
            "one of file|environment must be set",
        ),
        (
            "services: {web: {image: a}}\nconfigs: {c: {file: ./x, content: y}}",
            "configs.c",
            "file|environment|content attributes are mutually exclusive",
        ),
        (
            "services: {web: {image: a}}\nvolumes: {v: {external: true, driver: local}}",
            "volumes.v",
            "conflicting parameters \"external\" and \"driver\" specified",
        ),
        (
            "services: {web: {image: a}}\nnetworks: {n: {name: a, external: {name: b}}}",
            "networks.n",
            "name and external.name conflict; only use name",
        ),
        (
            "services: {web: {build: {context: ., dockerfile: D, dockerfile_inline: 'FROM x'}}}",
            "services.web.build",
            "service \"web\" declares mutually exclusive dockerfile and dockerfile_inline",
        ),
        (
            "services: {web: {image: a, gpus: [{count: 1, device_ids: ['0']}]}}",
            "services.web.gpus[0]",
            "\"count\" and \"device_ids\" attributes are exclusive",
        ),
    ];
    for (yaml, path, message) in cases {
        let (loc, msg) = invalid(yaml);
        assert_eq!(loc, *path, "location for {yaml}");
        assert_eq!(msg, format!("{path}: {message}"), "message for {yaml}");
    }
}

#[test]
fn optional_dependency_on_a_missing_service_is_allowed() {
    let app = load("services: {web: {image: a, depends_on: {db: {condition: service_started, required: false}}}}").unwrap();
    assert!(!app.services["web"].depends_on["db"].required);
}

#[test]
fn typing_errors_table() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "services: {web: {image: a, bogus: 1}}",
            "services.web.bogus",
            "unknown key services.web.bogus",
        ),
        (
            "services: {web: {image: a, deploy: {resources: {limits: {memory: 1g, gpu: 1}}}}}",
            "services.web.deploy.resources.limits.gpu",
            "unknown key services.web.deploy.resources.limits.gpu",
        ),
        (
            "services: {web: {image: a, ports: [{target: 80, nope: 1}]}}",
            "services.web.ports[0].nope",
            "unknown key services.web.ports[0].nope",
        ),
        (
            "services: {web: {image: a}}\nbogus: 1",
            "bogus",
            "unknown key bogus",
        ),
        (
            "services: {web: {image: a, blkio_config: {weight: 10, x-foo: 1}}}",
            "services.web.blkio_config.x-foo",
            "unknown key services.web.blkio_config.x-foo",
        ),
        (
            "services: {web: {image: a, stop_grace_period: 10}}",
            "services.web.stop_grace_period",
            "services.web.stop_grace_period: invalid duration \"10\": missing unit",
        ),
        (
            "services: {web: {image: a, shm_size: lots}}",
            "services.web.shm_size",
            "services.web.shm_size: invalid size: 'lots'",
        ),
        (
            "services: {web: {image: a, privileged: maybe}}",
            "services.web.privileged",
            "services.web.privileged: expected a boolean, found \"maybe\"",
        ),
        (
            "services: {web: {image: a, cpu_shares: many}}",
            "services.web.cpu_shares",
            "services.web.cpu_shares: expected an integer, found \"many\"",
        ),
        (
            "services: {web: {image: a, depends_on: {db: {condition: service_ready}}}}\n",
            "services.web.depends_on.db.condition",
            "services.web.depends_on.db.condition: unknown variant `service_ready`, expected one of `service_started`, `service_healthy`, `service_completed_successfully`",
        ),
        (
            "services: {web: {image: a, volumes: [{type: disk, target: /x}]}}",
            "services.web.volumes[0]",
            "services.web.volumes[0]: invalid mount type \"disk\", must be one of bind, volume, tmpfs, cluster, npipe, image",
        ),
        (
            "services: {web: {image: a, command: \"echo 'x\"}}",
            "services.web.command",
            "services.web.command: unterminated single quote in \"echo 'x\"",
        ),
        (
            "services: {web: {image: a, extra_hosts: [nohost]}}",
            "services.web.extra_hosts[0]",
            "services.web.extra_hosts[0]: invalid additional host, missing IP: nohost",
        ),
    ];
    for (yaml, path, message) in cases {
        let (loc, msg) = invalid(yaml);
        assert_eq!(loc, *path, "location for {yaml}");
        assert_eq!(msg, *message, "message for {yaml}");
    }
}

#[test]
fn extensions_are_kept_everywhere_the_spec_allows() {
    let app = load(
        "x-top: 1\nservices:\n  web:\n    image: a\n    x-svc: 2\n    ports: [{target: 80, x-p: 3}]\n    deploy: {x-d: 4, resources: {x-r: 5}}\nnetworks: {n: {x-n: 6}}\nvolumes: {v: {x-v: 7}}\n",
    )
    .unwrap();
    assert_eq!(
        app.extensions.get("x-top"),
        Some(&serde_yaml::Value::from(1))
    );
    let web = &app.services["web"];
    assert_eq!(
        web.extensions.get("x-svc"),
        Some(&serde_yaml::Value::from(2))
    );
    assert_eq!(
        web.ports[0].extensions.get("x-p"),
        Some(&serde_yaml::Value::from(3))
    );
    let deploy = web.deploy.as_ref().unwrap();
    assert_eq!(
        deploy.extensions.get("x-d"),
        Some(&serde_yaml::Value::from(4))
    );
    assert_eq!(
        deploy.resources.extensions.get("x-r"),
        Some(&serde_yaml::Value::from(5))
    );
    assert_eq!(
        app.networks["n"].extensions.get("x-n"),
        Some(&serde_yaml::Value::from(6))
    );
    assert_eq!(
        app.volumes["v"].extensions.get("x-v"),
        Some(&serde_yaml::Value::from(7))
    );
    let out = app.to_yaml();
    for k in ["x-top: 1", "x-svc: 2", "x-p: 3", "x-n: 6"] {
        assert!(out.contains(k), "{k} missing from\n{out}");
    }
}
