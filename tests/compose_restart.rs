//! Restart policies on real containers: a crashing service under `restart: always` comes
//! back; `on-failure:3` gives up after three restarts. Each start is counted in a file the
//! containers append to through a bind mount.

mod compose_support;

use std::time::Duration;

use compose_support::Env;

const CRASHING: &str = r#"
services:
  always:
    image: busybox:latest
    command: ["sh", "-c", "echo start >> /out/always; sleep 1; exit 1"]
    restart: always
    volumes:
      - ./out:/out
  limited:
    image: busybox:latest
    command: ["sh", "-c", "echo start >> /out/limited; exit 3"]
    restart: on-failure:3
    volumes:
      - ./out:/out
"#;

#[test]
fn crashing_services_restart_per_policy() {
    let env = Env::with_daemon("cmp-restart", CRASHING);
    env.ok(&["up", "-d"]);
    env.wait_for("`always` restarted twice", Duration::from_secs(90), || {
        env.out_lines("always").len() >= 3
    });
    let mut seen = 0;
    env.wait_for("`limited` started 4 times", Duration::from_secs(90), || {
        let n = env.out_lines("limited").len();
        if n != seen {
            // shown if the wait fails: how far the restarts got, and the tasks' states
            eprintln!("`limited` started {n} times: {:?}", env.ps(&["-a"]));
            seen = n;
        }
        n >= 4
    });
    // having given up, `limited` stays exited with its code and is not started again,
    // while `always` keeps coming back
    let seen_always = env.out_lines("always").len();
    env.wait_for(
        "`always` restarted once more",
        Duration::from_secs(60),
        || env.out_lines("always").len() > seen_always,
    );
    assert_eq!(
        env.out_lines("limited").len(),
        4,
        "on-failure:3 ran more than 1 + 3 times"
    );
    let limited: Vec<_> = env
        .ps(&["-a"])
        .into_iter()
        .filter(|c| c["Service"] == "limited")
        .collect();
    assert!(
        limited.iter().all(|c| c["State"] == "exited"),
        "{limited:?}"
    );
    assert!(limited.iter().any(|c| c["ExitCode"] == 3), "{limited:?}");
}
