//! Who a client is: `?user=` under `--auth none`, an HS256 JWT otherwise;
//! and what an HTTP API caller may do (`role` claim). Client and API tokens
//! are told apart by their audience, so neither passes for the other.

use std::collections::HashMap;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::LEEWAY_SECS;
use crate::ids::UserId;
use crate::protocol::{ErrorCode, Failure};

/// The audience of HTTP API tokens.
pub const API_AUDIENCE: &str = "roomring-api";
/// The audience of client (WebSocket) tokens; a client token may also have none.
pub const CLIENT_AUDIENCE: &str = "roomring-client";

/// How clients are identified.
#[derive(Clone)]
pub enum Auth {
    /// `?user=NAME`, no secret (`dev`, trusted networks).
    None,
    /// HS256 JWTs signed with one of the keys.
    Jwt(Keys),
}

/// The keys tokens may be signed with (the current one, and during a
/// rotation the previous one), and the clock leeway for `exp` and `nbf`.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<DecodingKey>,
    leeway_secs: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Jwt(keys) => write!(
                f,
                "jwt ({} keys, leeway {} s)",
                keys.keys.len(),
                keys.leeway_secs
            ),
        }
    }
}

impl Auth {
    /// JWT auth with this HS256 secret and the default leeway.
    pub fn jwt(secret: &str) -> Self {
        Self::jwt_keys(&[secret], LEEWAY_SECS)
    }

    /// JWT auth accepting tokens signed with any of `secrets`.
    pub fn jwt_keys(secrets: &[&str], leeway_secs: u64) -> Self {
        Self::Jwt(Keys {
            keys: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
            leeway_secs,
        })
    }
}

/// Signs `claims` as an HS256 JWT with `secret` (`roomring token`).
pub fn sign(
    claims: &serde_json::Value,
    secret: &[u8],
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key)
}

/// `aud`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn has(&self, name: &str) -> bool {
        match self {
            Self::One(a) => a == name,
            Self::Many(all) => all.iter().any(|a| a == name),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
    aud: Option<Audience>,
    rooms: Option<Vec<String>>,
    role: Option<String>,
}

/// An authenticated WebSocket client.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// Room patterns the token allows; `None` allows every room.
    pub rooms: Option<Vec<String>>,
    /// When the token expires (seconds since the Unix epoch, leeway
    /// included); the connection is closed then.
    pub expires: Option<u64>,
}

impl Identity {
    /// Whether the identity may use `room`.
    pub fn may_use(&self, room: &str) -> bool {
        self.rooms.as_ref().is_none_or(|patterns| {
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => p == room,
            })
        })
    }
}

/// What an HTTP API caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    /// Rooms and notifications.
    Service,
    /// Everything, including `/api/cluster*`.
    Admin,
}

fn unauthorized(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Unauthorized, message)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Which kind of token a caller must present.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    Api,
}

impl Keys {
    fn decode(&self, token: &str, kind: Kind) -> Result<Claims, Failure> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below: absent is allowed for clients
        validation.leeway = self.leeway_secs;
        let mut last = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return check_audience(data.claims, kind),
                Err(e) => {
                    let bad_signature =
                        matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature);
                    last = Some(e);
                    if !bad_signature {
                        break;
                    }
                }
            }
        }
        Err(unauthorized(match last {
            Some(e) => format!("bad token: {e}"),
            None => "no key to check the token with".to_string(),
        }))
    }
}

fn check_audience(claims: Claims, kind: Kind) -> Result<Claims, Failure> {
    let ok = match (&claims.aud, kind) {
        (Some(aud), Kind::Api) => aud.has(API_AUDIENCE),
        (None, Kind::Api) => false,
        (Some(aud), Kind::Client) => aud.has(CLIENT_AUDIENCE) && !aud.has(API_AUDIENCE),
        (None, Kind::Client) => true,
    };
    if ok {
        Ok(claims)
    } else if kind == Kind::Api {
        Err(unauthorized(format!(
            "an API token needs aud \"{API_AUDIENCE}\""
        )))
    } else {
        Err(unauthorized(format!(
            "a client token needs aud \"{CLIENT_AUDIENCE}\" or none"
        )))
    }
}

impl Auth {
    /// Identifies a WebSocket client from its query and headers.
    pub fn identify(
        &self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Identity, Failure> {
        match self {
            Self::None => {
                let name = query
                    .get("user")
                    .ok_or_else(|| unauthorized("missing ?user=NAME"))?;
                let user = UserId::parse(name).map_err(|e| unauthorized(e.to_string()))?;
                Ok(Identity {
                    user,
                    rooms: None,
                    expires: None,
                })
            }
            Self::Jwt(keys) => {
                let token = query
                    .get("token")
                    .map(String::as_str)
                    .or_else(|| bearer(headers))
                    .ok_or_else(|| unauthorized("missing token"))?;
                let claims = keys.decode(token, Kind::Client)?;
                let sub = claims.sub.ok_or_else(|| unauthorized("token has no sub"))?;
                let user =
                    UserId::parse(&sub).map_err(|e| unauthorized(format!("bad sub: {e}")))?;
                Ok(Identity {
                    user,
                    rooms: claims.rooms,
                    expires: Some(claims.exp.saturating_add(keys.leeway_secs)),
                })
            }
        }
    }

    /// Checks that an HTTP API caller holds `need`.
    pub fn authorize_api(&self, headers: &HeaderMap, need: ApiRole) -> Result<(), Failure> {
        let Self::Jwt(keys) = self else { return Ok(()) };
        let token =
            bearer(headers).ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
        let claims = keys.decode(token, Kind::Api)?;
        let ok = match claims.role.as_deref() {
            Some("admin") => true,
            Some("service") => need == ApiRole::Service,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::Forbidden,
                "the token's role does not allow this",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signed(claims: serde_json::Value, secret: &[u8]) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        signed(claims, b"s3cret")
    }

    fn now() -> u64 {
        crate::protocol::now_ms() / 1000
    }

    fn exp() -> u64 {
        now() + 600
    }

    fn client(auth: &Auth, token: String) -> Result<Identity, Failure> {
        auth.identify(
            &HashMap::from([("token".to_string(), token)]),
            &HeaderMap::new(),
        )
    }

    fn api(auth: &Auth, token: &str, need: ApiRole) -> Result<(), ErrorCode> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        auth.authorize_api(&headers, need).map_err(|f| f.code)
    }

    #[test]
    fn jwt_identities_and_room_patterns() {
        let auth = Auth::jwt("s3cret");
        let t = token(json!({"sub": "ann", "exp": exp(), "rooms": ["chat:couple-42", "board:*"]}));
        let id = client(&auth, t).unwrap();
        assert_eq!(id.user.as_str(), "ann");
        assert!(id.may_use("chat:couple-42"));
        assert!(id.may_use("board:any"));
        assert!(!id.may_use("chat:couple-43"));
        assert_eq!(id.expires, Some(exp() + 5));
        let no_exp = token(json!({"sub": "ann"}));
        assert_eq!(
            client(&auth, no_exp).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        let wrong = signed(json!({"sub": "ann", "exp": exp()}), b"other");
        assert!(client(&auth, wrong).is_err());
    }

    #[test]
    fn client_and_api_tokens_are_not_interchangeable() {
        let auth = Auth::jwt("s3cret");
        let admin_as_client = token(json!({"sub": "ann", "exp": exp(), "role": "admin"}));
        assert_eq!(
            api(&auth, &admin_as_client, ApiRole::Service),
            Err(ErrorCode::Unauthorized)
        );
        let tagged_client =
            token(json!({"sub": "ann", "exp": exp(), "role": "admin", "aud": CLIENT_AUDIENCE}));
        assert_eq!(
            api(&auth, &tagged_client, ApiRole::Admin),
            Err(ErrorCode::Unauthorized)
        );
        assert!(client(&auth, tagged_client).is_ok());
        let api_token =
            token(json!({"sub": "ops", "exp": exp(), "role": "admin", "aud": API_AUDIENCE}));
        assert_eq!(api(&auth, &api_token, ApiRole::Admin), Ok(()));
        assert!(client(&auth, api_token).is_err());
        let both =
            token(json!({"sub": "ops", "exp": exp(), "aud": [CLIENT_AUDIENCE, API_AUDIENCE]}));
        assert!(client(&auth, both).is_err());
        let listed = token(json!({"sub": "ann", "exp": exp(), "aud": ["other", CLIENT_AUDIENCE]}));
        assert!(client(&auth, listed).is_ok());
        let foreign = token(json!({"sub": "ann", "exp": exp(), "aud": "someone-else"}));
        assert!(client(&auth, foreign).is_err());
    }

    #[test]
    fn api_roles() {
        let auth = Auth::jwt("s3cret");
        let service =
            token(json!({"sub": "svc", "exp": exp(), "role": "service", "aud": API_AUDIENCE}));
        assert_eq!(api(&auth, &service, ApiRole::Service), Ok(()));
        assert_eq!(
            api(&auth, &service, ApiRole::Admin),
            Err(ErrorCode::Forbidden)
        );
        let none = token(json!({"sub": "svc", "exp": exp(), "aud": API_AUDIENCE}));
        assert_eq!(
            api(&auth, &none, ApiRole::Service),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            auth.authorize_api(&HeaderMap::new(), ApiRole::Service)
                .unwrap_err()
                .code,
            ErrorCode::Unauthorized
        );
        assert!(Auth::None
            .authorize_api(&HeaderMap::new(), ApiRole::Admin)
            .is_ok());
    }

    #[test]
    fn not_before_and_expiry_honour_the_leeway() {
        let auth = Auth::jwt_keys(&["s3cret"], 5);
        let later = token(json!({"sub": "ann", "exp": exp(), "nbf": now() + 60}));
        assert!(client(&auth, later).is_err());
        let within = token(json!({"sub": "ann", "exp": exp(), "nbf": now() + 2}));
        assert!(client(&auth, within).is_ok());
        let just_expired = token(json!({"sub": "ann", "exp": now() - 2}));
        assert!(client(&auth, just_expired).is_ok());
        let long_expired = token(json!({"sub": "ann", "exp": now() - 60}));
        assert!(client(&auth, long_expired).is_err());
        let strict = Auth::jwt_keys(&["s3cret"], 0);
        let just_expired = token(json!({"sub": "ann", "exp": now() - 2}));
        assert!(client(&strict, just_expired).is_err());
    }

    #[test]
    fn a_rotation_accepts_the_current_and_the_previous_key() {
        let auth = Auth::jwt_keys(&["new", "old"], 5);
        let claims = json!({"sub": "ann", "exp": exp()});
        assert!(client(&auth, signed(claims.clone(), b"new")).is_ok());
        assert!(client(&auth, signed(claims.clone(), b"old")).is_ok());
        assert!(client(&auth, signed(claims, b"older")).is_err());
    }
}
