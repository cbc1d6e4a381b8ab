//! A board's widgets: pure state with versioned writes. Every change bumps
//! the widget's version `v`; a conditional `put` with a stale `base` is a
//! conflict.

use std::collections::BTreeMap;

use crate::protocol::client::{Widget, WidgetMove};
use crate::protocol::server::VersionedWidget;
use crate::protocol::{ErrorCode, Failure};

/// The widgets of one board, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    widgets: BTreeMap<String, VersionedWidget>,
}

impl Board {
    /// Creates or replaces a widget. With `base`, the widget must exist at
    /// exactly that version.
    pub fn put(&mut self, widget: Widget, base: Option<u64>) -> Result<String, Failure> {
        let current = self.widgets.get(&widget.id).map(|w| w.v);
        if let Some(base) = base {
            if current != Some(base) {
                let message = match current {
                    Some(v) => format!("widget {} is at version {v}, not {base}", widget.id),
                    None => format!("widget {} does not exist", widget.id),
                };
                return Err(Failure::new(ErrorCode::Conflict, message));
            }
        }
        let id = widget.id.clone();
        let v = current.unwrap_or(0) + 1;
        self.widgets
            .insert(id.clone(), VersionedWidget { widget, v });
        Ok(id)
    }

    /// Moves the widgets that exist; returns the ids moved.
    pub fn apply_moves(&mut self, moves: &[WidgetMove]) -> Vec<String> {
        let mut moved = Vec::with_capacity(moves.len());
        for m in moves {
            if let Some(w) = self.widgets.get_mut(&m.id) {
                w.widget.x = m.x;
                w.widget.y = m.y;
                w.v += 1;
                moved.push(m.id.clone());
            }
        }
        moved.sort();
        moved.dedup();
        moved
    }

    /// Deletes the widgets that exist; returns the ids deleted.
    pub fn delete(&mut self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|id| self.widgets.remove(*id).is_some())
            .cloned()
            .collect()
    }

    /// A board holding these widgets.
    pub fn from_widgets(widgets: Vec<VersionedWidget>) -> Self {
        Self {
            widgets: widgets
                .into_iter()
                .map(|w| (w.widget.id.clone(), w))
                .collect(),
        }
    }

    /// Applies a stored `board.changed` frame (when rebuilding from a log);
    /// other frames change nothing.
    pub fn replay(&mut self, frame: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Changed {
            t: String,
            #[serde(default)]
            widgets: Vec<VersionedWidget>,
            #[serde(default)]
            deleted: Vec<String>,
        }
        let Ok(changed) = serde_json::from_slice::<Changed>(frame) else {
            return;
        };
        if changed.t != "board.changed" {
            return;
        }
        for w in changed.widgets {
            self.widgets.insert(w.widget.id.clone(), w);
        }
        for id in changed.deleted {
            self.widgets.remove(&id);
        }
    }

    /// One widget by id.
    pub fn get(&self, id: &str) -> Option<&VersionedWidget> {
        self.widgets.get(id)
    }

    /// Every widget, by id.
    pub fn widgets(&self) -> impl Iterator<Item = &VersionedWidget> {
        self.widgets.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky(id: &str, x: f64) -> Widget {
        Widget {
            id: id.into(),
            kind: "sticky".into(),
            x,
            y: 0.0,
            w: None,
            h: None,
            text: None,
            color: None,
        }
    }

    #[test]
    fn versions_and_conflicts() {
        let mut b = Board::default();
        b.put(sticky("a", 1.0), None).unwrap();
        assert_eq!(b.get("a").unwrap().v, 1);
        b.put(sticky("a", 2.0), Some(1)).unwrap();
        assert_eq!(b.get("a").unwrap().v, 2);
        let stale = b.put(sticky("a", 3.0), Some(1)).unwrap_err();
        assert_eq!(stale.code, ErrorCode::Conflict);
        assert_eq!(
            b.get("a").unwrap().widget.x,
            2.0,
            "a refused write changes nothing"
        );
        let missing = b.put(sticky("zz", 3.0), Some(1)).unwrap_err();
        assert_eq!(missing.code, ErrorCode::Conflict);
        assert!(b.get("zz").is_none());
    }

    #[test]
    fn moves_and_deletes_skip_unknown_ids() {
        let mut b = Board::default();
        b.put(sticky("a", 0.0), None).unwrap();
        b.put(sticky("b", 0.0), None).unwrap();
        let moves = [
            WidgetMove {
                id: "a".into(),
                x: 5.0,
                y: 6.0,
            },
            WidgetMove {
                id: "nope".into(),
                x: 1.0,
                y: 1.0,
            },
        ];
        assert_eq!(b.apply_moves(&moves), vec!["a".to_string()]);
        assert_eq!(
            (b.get("a").unwrap().widget.x, b.get("a").unwrap().v),
            (5.0, 2)
        );
        assert_eq!(
            b.delete(&["b".into(), "nope".into()]),
            vec!["b".to_string()]
        );
        assert_eq!(b.widgets().count(), 1);
    }
}
