//! The archive on a real PostgreSQL server: the suite every backend passes,
//! and what a bad URL or an unreachable server gets.

mod support;

use roomring::archive::postgres::PostgresArchive;
use support::postgres::Postgres;

#[tokio::test]
async fn the_postgres_archive_passes_the_suite() {
    let pg = Postgres::start();
    let archive = PostgresArchive::connect(&pg.url()).await.expect("connects");
    roomring::archive::conformance::run(&archive).await;
    // A second process starting on the same database finds the table there.
    PostgresArchive::connect(&pg.url())
        .await
        .expect("connects again");
}

#[tokio::test]
async fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let bad = PostgresArchive::connect("mysql://x")
        .await
        .err()
        .expect("refused");
    assert!(bad.to_string().contains("postgres://"), "{bad}");
    let port = support::redis::free_port();
    let absent =
        PostgresArchive::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .await
            .err()
            .expect("no server");
    assert!(
        absent.to_string().contains("archive unavailable"),
        "{absent}"
    );
}
