//! Which names and pages may reach `/ws` and the API. Under `--auth none`
//! anyone who reaches the port may call them, so the gateway takes only
//! requests addressed to it by a loopback name or its own address (a page
//! of another site whose name was rebound to this host names that site in
//! `Host`) and, when the browser says which page sent a request (`Origin`),
//! only the server's own pages (a page of another site cannot drain a node
//! or broadcast through a visitor's browser). `--allowed-origins` adds
//! pages, and the names they reach the gateway by, in every mode.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};

/// What a gateway checks of a request's `Host` and `Origin`.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Whether `Host` and `Origin` are checked whatever the list says
    /// (`--auth none`).
    open: bool,
    /// The address the gateway is bound to, and the one it advertises.
    own: Vec<String>,
    /// Bound to every address (`0.0.0.0`, `::`): any IP address is its own
    /// (a rebound name is a name, never an address).
    any_address: bool,
    /// `scheme://host[:port]` of the pages allowed besides its own.
    origins: Vec<String>,
}

impl Guard {
    /// The guard of a gateway bound to `bound`, advertised as `advertise`.
    pub(crate) fn new(
        open: bool,
        bound: SocketAddr,
        advertise: Option<&str>,
        origins: &[String],
    ) -> Self {
        let mut own = vec![bound.to_string().to_ascii_lowercase()];
        own.extend(advertise.map(str::to_ascii_lowercase));
        let origins = origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        Self {
            open,
            own,
            origins,
            any_address: bound.ip().is_unspecified(),
        }
    }

    /// Whether a request with these headers may go on, or why not.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if self.open {
            if let Some(host) = &host {
                if !self.is_own_host(host) {
                    return Err(format!("this gateway is not reached as {host}"));
                }
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if !self.open && self.origins.is_empty() {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let same_site = host.is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        if same_site || self.origins.contains(&origin) {
            Ok(())
        } else {
            Err(format!("pages of {origin} may not call this gateway"))
        }
    }

    /// A loopback name, the gateway's own address, or the host of an
    /// allowed origin.
    fn is_own_host(&self, host: &str) -> bool {
        let name = name_of(host);
        let ip = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let loopback = name == "localhost"
            || name.ends_with(".localhost")
            || ip.is_some_and(|ip| ip.is_loopback());
        loopback
            || (self.any_address && ip.is_some())
            || self
                .own
                .iter()
                .any(|own| own == host || name_of(own) == name && !name.is_empty())
            || self
                .origins
                .iter()
                .any(|o| o.split_once("://").is_some_and(|(_, h)| h == host))
    }
}

/// The name or address of a `Host` (`name[:port]`, `[v6][:port]`).
fn name_of(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, host.parse().unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    fn open() -> Guard {
        let bound: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        Guard::new(true, bound, None, &["https://chat.example.com".into()])
    }

    #[test]
    fn without_auth_only_own_names_and_own_pages_pass() {
        let g = open();
        for host in [
            "localhost:8080",
            "app.localhost",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:8080",
            "10.0.0.5:8080",
            "10.0.0.5",
            "chat.example.com",
        ] {
            assert_eq!(g.check(&headers(Some(host), None)), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "10.0.0.6:8080",
            "localhost.evil.example",
            "192.168.1.1",
        ] {
            assert!(g.check(&headers(Some(host), None)).is_err(), "{host}");
        }
        let own = |origin| g.check(&headers(Some("localhost:8080"), Some(origin)));
        assert_eq!(own("http://localhost:8080"), Ok(()));
        assert_eq!(own("https://chat.example.com"), Ok(()), "allowed");
        assert!(own("http://evil.example").is_err(), "another site's page");
        assert!(
            own("http://localhost:9999").is_err(),
            "another port, another site"
        );
        assert!(own("null").is_err());
    }

    #[test]
    fn bound_to_every_address_any_address_is_its_own_but_no_other_name() {
        let bound: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let g = Guard::new(true, bound, None, &[]);
        assert_eq!(g.check(&headers(Some("192.168.1.20:8080"), None)), Ok(()));
        assert_eq!(g.check(&headers(Some("[fd00::5]:8080"), None)), Ok(()));
        assert!(g.check(&headers(Some("evil.example:8080"), None)).is_err());
    }

    #[test]
    fn with_auth_origins_are_checked_only_when_listed() {
        let bound: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let plain = Guard::new(false, bound, None, &[]);
        let any = headers(Some("gw.example"), Some("http://elsewhere.example"));
        assert_eq!(plain.check(&any), Ok(()), "a token is the guard");
        let listed = Guard::new(false, bound, None, &["https://app.example".into()]);
        assert!(listed.check(&any).is_err());
        let from_app = headers(Some("gw.example"), Some("https://app.example"));
        assert_eq!(listed.check(&from_app), Ok(()));
        assert_eq!(
            listed.check(&headers(Some("gw.example"), None)),
            Ok(()),
            "no Origin: no page"
        );
    }
}
