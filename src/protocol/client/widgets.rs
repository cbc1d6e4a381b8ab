//! The checks of a board operation's widgets and moves: coordinates and
//! sizes within the contract's bounds, texts and tags within their lengths.

use serde_json::value::RawValue;

use super::*;
use serde::Deserialize;

/// Whether a coordinate or size is one the contract allows.
pub fn in_bounds(n: f64) -> bool {
    n.is_finite() && n.abs() <= MAX_COORD
}

/// An offset: finite, and at most the whole span of coordinates.
pub(super) fn finite(v: Option<&RawValue>, name: &str) -> Result<f64, Failure> {
    let n: f64 = required(v, name)?;
    if n.is_finite() && n.abs() <= 2.0 * MAX_COORD {
        Ok(n)
    } else {
        Err(Failure::bad_request(format!(
            "{name} must be a finite number within ±{}",
            2.0 * MAX_COORD
        )))
    }
}

pub(super) fn check_widget(w: &Widget) -> Result<(), Failure> {
    if w.id.is_empty() || w.id.len() > 128 {
        return Err(Failure::bad_request("widget.id must be 1-128 bytes"));
    }
    if w.kind.is_empty() || w.kind.len() > MAX_TAG_BYTES {
        return Err(Failure::bad_request(format!(
            "widget.kind must be 1-{MAX_TAG_BYTES} bytes"
        )));
    }
    if w.color.as_ref().is_some_and(|c| c.len() > MAX_TAG_BYTES) {
        return Err(Failure::bad_request(format!(
            "widget.color must be at most {MAX_TAG_BYTES} bytes"
        )));
    }
    if w.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(Failure::bad_request(format!(
            "widget.text must be at most {MAX_TEXT_BYTES} bytes"
        )));
    }
    let dims = [Some(w.x), Some(w.y), w.w, w.h];
    if dims.iter().flatten().any(|n| !in_bounds(*n)) {
        return Err(Failure::bad_request(format!(
            "widget coordinates and sizes must be finite numbers within ±{MAX_COORD}"
        )));
    }
    Ok(())
}

pub(super) fn moves(v: Option<&RawValue>) -> Result<Vec<WidgetMove>, Failure> {
    let moves: Vec<WidgetMove> = required(v, "moves")?;
    if moves.len() > MAX_MOVES {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_MOVES} moves per frame"),
        ));
    }
    if moves.iter().any(|m| !in_bounds(m.x) || !in_bounds(m.y)) {
        return Err(Failure::bad_request(format!(
            "moves must have finite coordinates within ±{MAX_COORD}"
        )));
    }
    Ok(moves)
}

/// A field that must be there, read as `T`.
pub(super) fn required<'de, T: Deserialize<'de>>(
    v: Option<&'de RawValue>,
    name: &str,
) -> Result<T, Failure> {
    let v = v.ok_or_else(|| Failure::bad_request(format!("missing field {name}")))?;
    serde_json::from_str(v.get()).map_err(|e| Failure::bad_request(format!("invalid {name}: {e}")))
}
