//! The command line, flag by flag: defaults, refusals, secrets.

use super::flags::retention_arg;
use super::*;
use crate::gateway::Auth;

fn run(args: &[&str]) -> Result<Command, UsageError> {
    parse(std::iter::once("roomring").chain(args.iter().copied())).map(|i| i.command)
}

#[test]
fn dev_defaults() {
    let Ok(Command::Dev(o)) = run(&["dev"]) else {
        panic!("dev parses")
    };
    assert_eq!(o.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(o.nodes, 3);
    assert!(matches!(o.auth, Auth::None));
}

#[test]
fn bad_flags_exit_64() {
    let node = [
        "node",
        "--listen",
        "127.0.0.1:0",
        "--cluster-secret",
        LONG_C,
    ];
    let gateway = ["gateway", "--id", "g1", "--listen", "127.0.0.1:0"];
    let (n1, redis) = (["--id", "n1"], ["--coordinator", "redis://x"]);
    let bad: Vec<Vec<&str>> = vec![
        vec!["dev", "--nodes", "0"],
        vec!["dev", "--listen", "nowhere"],
        vec!["dev", "--bogus"],
        vec!["nothing"],
        [&node[..], &n1, &["--coordinator", "http://x"]].concat(),
        [&node[..], &["--id", "n 1"], &redis].concat(),
        [&gateway[..], &redis].concat(),
        vec!["ctl", "--coordinator", "redis://x", "locate", "nope"],
        // A flag of another role is refused, not silently ignored.
        [&node[..], &n1, &redis, &["--rate", "5"]].concat(),
        [
            &gateway[..],
            &redis,
            &[
                "--auth",
                "none",
                "--cluster-secret",
                LONG_C,
                "--history",
                "5000",
            ],
        ]
        .concat(),
        vec!["dev", "--cluster-secret", LONG_C],
    ];
    for args in bad {
        let err = run(&args).expect_err(&format!("{args:?} must fail"));
        assert_eq!(err.code, EXIT_USAGE, "{args:?}");
    }
    // The same flags, right, are taken.
    assert!(run(&[&node[..], &n1, &redis].concat()).is_ok());
    assert_eq!(run(&["--help"]).unwrap_err().code, 0);
}

const LONG_J: &str = "a-jwt-secret-of-32-bytes-at-least";
const LONG_C: &str = "a-cluster-secret-of-32-bytes-or-more";

#[test]
fn a_retention_is_a_number_and_a_unit() {
    let secs = |s| retention_arg(s).map(|d| d.as_secs());
    assert_eq!(secs("90d"), Ok(90 * 86_400));
    assert_eq!(secs("12h"), Ok(12 * 3600));
    assert_eq!(secs("45s"), Ok(45));
    for bad in ["", "d", "10", "0s", "5w", "-1d", "1.5h"] {
        assert!(retention_arg(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_fresh_secret_is_long_and_new_each_time() {
    let (a, b) = (Secret::fresh_text(), Secret::fresh_text());
    assert_eq!(a.len(), 2 * Secret::MIN_BYTES);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    assert!(matches!(run(&["secret"]), Ok(Command::Secret)));
}

#[test]
fn secrets_outside_dev() {
    let base = [
        "gateway",
        "--id",
        "g1",
        "--listen",
        "127.0.0.1:0",
        "--coordinator",
        "redis://127.0.0.1:6379",
    ];
    let ok = run(&[
        &base[..],
        &["--jwt-secret", LONG_J, "--cluster-secret", LONG_C],
    ]
    .concat())
    .unwrap();
    assert!(matches!(
        ok,
        Command::Gateway {
            config: GatewayConfig {
                auth: Auth::Jwt(_),
                ..
            },
            ..
        }
    ));
    assert!(run(&[&base[..], &["--jwt-secret", LONG_J]].concat()).is_err());
    for short in [
        &["--jwt-secret", "j", "--cluster-secret", LONG_C][..],
        &[
            "--jwt-secret",
            LONG_J,
            "--jwt-previous-secret",
            "p",
            "--cluster-secret",
            LONG_C,
        ],
        &["--jwt-secret", LONG_J, "--cluster-secret", &LONG_C[..31]],
    ] {
        let e = run(&[&base[..], short].concat()).expect_err("a short secret");
        assert_eq!(e.code, EXIT_USAGE);
        assert!(e.message.contains("at least 32 bytes"), "{}", e.message);
    }
    // --auth is about clients: links still need the secret.
    assert!(run(&[&base[..], &["--auth", "none"]].concat()).is_err());
    assert!(run(&[&base[..], &["--auth", "none", "--cluster-secret", "short"]].concat()).is_err());
    assert!(run(&[&base[..], &["--auth", "none", "--cluster-secret", LONG_C]].concat()).is_ok());
}

#[test]
fn a_rejected_coordinator_url_is_not_echoed() {
    let e = run(&[
        "node",
        "--id",
        "n1",
        "--listen",
        "127.0.0.1:0",
        "--cluster-secret",
        LONG_C,
        "--coordinator",
        "http://user:hunter2@example:6379",
    ])
    .unwrap_err();
    assert_eq!(e.code, EXIT_USAGE);
    assert!(!e.message.contains("hunter2"), "{}", e.message);
    for url in [
        "redis://h:1",
        "rediss://u:p@h:1/2",
        "redis+sentinel://a:1,b:2/main",
    ] {
        assert!(
            run(&["ctl", "--coordinator", url, "members"]).is_ok(),
            "{url}"
        );
    }
}

#[test]
fn token_signs_client_and_api_tokens() {
    let Command::Token { claims, .. } =
        run(&["token", "--sub", "ann", "--jwt-secret", LONG_J]).unwrap()
    else {
        panic!("not a token command")
    };
    assert_eq!(claims["aud"], "roomring-client");
    let Command::Token { claims, .. } = run(&[
        "token",
        "--sub",
        "ops",
        "--aud",
        "api",
        "--role",
        "admin",
        "--jwt-secret",
        LONG_J,
    ])
    .unwrap() else {
        panic!("not a token command")
    };
    assert_eq!(claims["aud"], "roomring-api");
    assert_eq!(claims["role"], "admin");
    assert!(run(&[
        "token",
        "--sub",
        "ops",
        "--aud",
        "api",
        "--jwt-secret",
        LONG_J
    ])
    .is_err());
    assert!(run(&["token", "--sub", "bad name", "--jwt-secret", LONG_J]).is_err());
}
