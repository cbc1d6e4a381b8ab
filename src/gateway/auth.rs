//! Who a client is: `?user=` under `--auth none`, an HS256 JWT otherwise;
//! and what an HTTP API caller may do (`role` claim).

use std::collections::HashMap;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::ids::UserId;
use crate::protocol::{ErrorCode, Failure};

/// How clients are identified.
#[derive(Clone)]
pub enum Auth {
    /// `?user=NAME`, no secret (`dev`, trusted networks).
    None,
    /// HS256 JWTs signed with the cluster's secret.
    Jwt(DecodingKey),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Jwt(_) => "jwt",
        })
    }
}

impl Auth {
    /// JWT auth with this HS256 secret.
    pub fn jwt(secret: &str) -> Self {
        Self::Jwt(DecodingKey::from_secret(secret.as_bytes()))
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
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

fn decode(key: &DecodingKey, token: &str) -> Result<Claims, Failure> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| unauthorized(format!("bad token: {e}")))
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
                Ok(Identity { user, rooms: None })
            }
            Self::Jwt(key) => {
                let token = query
                    .get("token")
                    .map(String::as_str)
                    .or_else(|| bearer(headers))
                    .ok_or_else(|| unauthorized("missing token"))?;
                let claims = decode(key, token)?;
                let sub = claims.sub.ok_or_else(|| unauthorized("token has no sub"))?;
                let user =
                    UserId::parse(&sub).map_err(|e| unauthorized(format!("bad sub: {e}")))?;
                Ok(Identity {
                    user,
                    rooms: claims.rooms,
                })
            }
        }
    }

    /// Checks that an HTTP API caller holds `need`.
    pub fn authorize_api(&self, headers: &HeaderMap, need: ApiRole) -> Result<(), Failure> {
        let Self::Jwt(key) = self else { return Ok(()) };
        let token =
            bearer(headers).ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
        let claims = decode(key, token)?;
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

    fn token(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"s3cret");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn exp() -> u64 {
        crate::protocol::now_ms() / 1000 + 600
    }

    #[test]
    fn jwt_identities_and_room_patterns() {
        let auth = Auth::jwt("s3cret");
        let t = token(
            serde_json::json!({"sub": "ann", "exp": exp(), "rooms": ["chat:couple-42", "board:*"]}),
        );
        let q = HashMap::from([("token".to_string(), t)]);
        let id = auth.identify(&q, &HeaderMap::new()).unwrap();
        assert_eq!(id.user.as_str(), "ann");
        assert!(id.may_use("chat:couple-42"));
        assert!(id.may_use("board:any"));
        assert!(!id.may_use("chat:couple-43"));
        let no_exp = HashMap::from([(
            "token".to_string(),
            token(serde_json::json!({"sub": "ann"})),
        )]);
        assert_eq!(
            auth.identify(&no_exp, &HeaderMap::new()).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        let wrong = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "ann", "exp": exp()}),
            &jsonwebtoken::EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        let q = HashMap::from([("token".to_string(), wrong)]);
        assert!(auth.identify(&q, &HeaderMap::new()).is_err());
    }

    #[test]
    fn api_roles() {
        let auth = Auth::jwt("s3cret");
        let mut headers = HeaderMap::new();
        let service = token(serde_json::json!({"sub": "svc", "exp": exp(), "role": "service"}));
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {service}").parse().unwrap(),
        );
        assert!(auth.authorize_api(&headers, ApiRole::Service).is_ok());
        assert_eq!(
            auth.authorize_api(&headers, ApiRole::Admin)
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
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
}
