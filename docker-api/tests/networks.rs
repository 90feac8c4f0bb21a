//! One set of network records for every client: a network made by berth's own network
//! command (`Containers::network_create`, what `berth network create` runs, in another
//! process's view of the data root) shows up in `docker network ls`/`inspect` with its
//! labels while the server runs, and a network made with `docker network create` is in
//! berth's own list (`Containers::network_list`, what `berth network ls` prints) with its
//! labels, under the same id.

mod support;

use std::collections::BTreeMap;

use berth_node_agent::container::NetworkCreate;
use support::Server;

#[test]
fn networks_are_shared_between_berth_and_the_docker_api() {
    let s = Server::start();
    // the server has listed its networks once already (what a long-lived process caches)
    let before = s.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!before.contains("berthmade"), "{before}");

    let berth = s.containers();
    berth
        .network_create(&NetworkCreate {
            name: "berthmade".into(),
            subnets: vec!["10.231.17.0/24".into()],
            labels: BTreeMap::from([
                ("com.docker.compose.project".to_string(), "proj".to_string()),
                (
                    "com.docker.compose.network".to_string(),
                    "default".to_string(),
                ),
            ]),
            ..NetworkCreate::default()
        })
        .expect("berth network create");
    let ls = s.ok(&[
        "network",
        "ls",
        "--filter",
        "label=com.docker.compose.project=proj",
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert_eq!(ls.trim(), "berthmade bridge");
    let inspect = s.ok(&[
        "network",
        "inspect",
        "--format",
        "{{index .Labels \"com.docker.compose.network\"}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
        "berthmade",
    ]);
    assert_eq!(inspect.trim(), "default 10.231.17.0/24");
    // a container runs on it through the API
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--network",
            "berthmade",
            "busybox",
            "echo",
            "on it"
        ]),
        "on it\n"
    );

    // the other way: made through the API, listed by berth with the same id and labels
    let id = s.ok(&["network", "create", "--label", "made-by=docker", "apimade"]);
    let listed = berth.network_list().expect("berth network ls");
    let mine = listed
        .iter()
        .find(|n| n["Name"] == "apimade")
        .unwrap_or_else(|| panic!("apimade missing from berth's list: {listed:?}"));
    assert_eq!(mine["Labels"]["made-by"], "docker");
    assert_eq!(mine["Id"].as_str().unwrap(), id.trim());
    assert!(
        !s.root
            .path()
            .join("docker-api/networks/apimade.json")
            .exists()
    );

    // removal through either side is seen by the other
    berth.network_remove("apimade").expect("berth network rm");
    let ls = s.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.lines().any(|l| l == "apimade"), "{ls}");
    s.ok(&["network", "rm", "berthmade"]);
    assert!(
        !berth
            .network_list()
            .unwrap()
            .iter()
            .any(|n| n["Name"] == "berthmade")
    );
}
