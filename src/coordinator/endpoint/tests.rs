use super::*;

#[test]
fn every_form_parses_and_none_is_printed_with_its_password() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://u:secret@h:1/2",
        "rediss://u:secret@h:1/2",
        "redis+sentinel://a:1,b:2/main",
        "redis+sentinel://u:secret@a:1/main/3",
        "rediss+sentinel://u:secret@a:1,b:2/main",
    ] {
        let e: Endpoint = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let shown = format!("{e:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[test]
fn bad_forms_are_refused_without_quoting_them() {
    for url in [
        "secret",
        "http://secret@h:1",
        "redis+sentinel://secret@a:1",
        "redis+sentinel://secret@a/main",
        "redis+sentinel://a:1/",
        "redis+sentinel://a:1/main/x",
        "redis://:secret@h:notaport",
    ] {
        let e = url.parse::<Endpoint>().expect_err(url);
        assert!(!e.to_string().contains("secret"), "{url}: {e}");
    }
}

#[test]
fn sentinel_credentials_are_for_the_primary() {
    let Kind::Sentinel {
        sentinels,
        master,
        redis,
    } = "redis+sentinel://app:p%40ss@a:1,b:2/main/3"
        .parse::<Endpoint>()
        .unwrap()
        .kind
    else {
        panic!("a Sentinel endpoint");
    };
    assert_eq!(sentinels.addrs, ["a:1", "b:2"]);
    assert!(!sentinels.tls);
    assert_eq!(master, "main");
    assert_eq!(redis.username(), Some("app"));
    assert_eq!(redis.password(), Some("p@ss"));
    assert_eq!(redis.db(), 3);
}
