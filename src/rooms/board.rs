//! A board's widgets and roles: pure state with versioned writes. Every
//! change bumps the widget's version `v`; a conditional `put` with a stale
//! `base` is a conflict. Roles are plain state of the room's single writer,
//! so that there is exactly one owner whatever the concurrency: a transfer
//! is one step, not a lock.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::protocol::client::{
    in_bounds, BoardRole, Widget, WidgetMove, MAX_BOARD_BYTES, MAX_COORD, MAX_WIDGETS,
};
use crate::protocol::server::VersionedWidget;
use crate::protocol::{ErrorCode, Failure};

/// The role of everyone not named (`*`) unless the owner says otherwise.
pub const DEFAULT_ROLE: BoardRole = BoardRole::Editor;
/// The key of the default role in `roles`.
pub const EVERYONE: &str = "*";

/// The widgets of one board, by id, and who may do what.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    widgets: BTreeMap<String, VersionedWidget>,
    /// Named users' roles (the owner's included) and `*`'s.
    roles: BTreeMap<String, BoardRole>,
    /// What the widgets take encoded, each counted by `size`.
    bytes: usize,
}

/// Bytes a widget's numbers (`x`, `y`, `w`, `h`, `v`) may take encoded at
/// their widest (within ±10⁹ and u64).
const NUMBERS_AT_WIDEST: usize = 5 * 24;

/// What a widget counts for against the board's byte limit: its encoded
/// size with its numbers at their widest, so that no move can take the
/// board past the limit, and the count is the same wherever the numbers
/// are (a board rebuilt from its log counts what the live one did).
fn size(w: &VersionedWidget) -> usize {
    let zeroed = VersionedWidget {
        widget: Widget {
            x: 0.0,
            y: 0.0,
            w: w.widget.w.map(|_| 0.0),
            h: w.widget.h.map(|_| 0.0),
            ..w.widget.clone()
        },
        v: 0,
    };
    serde_json::to_vec(&zeroed).map_or(0, |v| v.len()) + NUMBERS_AT_WIDEST
}

/// Role changes of one operation, to announce in its `board.changed`.
pub type RoleChanges = BTreeMap<String, BoardRole>;

impl Board {
    /// The role of `user`.
    pub fn role_of(&self, user: &str) -> BoardRole {
        self.roles
            .get(user)
            .or_else(|| self.roles.get(EVERYONE))
            .copied()
            .unwrap_or(DEFAULT_ROLE)
    }

    /// The owner, once someone has changed the board.
    pub fn owner(&self) -> Option<&str> {
        self.roles
            .iter()
            .find(|(_, r)| **r == BoardRole::Owner)
            .map(|(u, _)| u.as_str())
    }

    /// Makes `user` the owner of a board nobody owns yet (its first change).
    pub fn claim(&mut self, user: &str, changes: &mut RoleChanges) {
        if self.owner().is_none() {
            self.roles.insert(user.to_string(), BoardRole::Owner);
            changes.insert(user.to_string(), BoardRole::Owner);
        }
    }

    /// `by` (who must own the board) gives `user` a `role`; `owner`
    /// transfers ownership (the old owner becomes an editor), `*` sets
    /// everyone else's role.
    pub fn set_role(
        &mut self,
        by: &str,
        user: &str,
        role: BoardRole,
        changes: &mut RoleChanges,
    ) -> Result<(), Failure> {
        self.claim(by, changes);
        if self.owner() != Some(by) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "only the board's owner may grant roles",
            ));
        }
        match (user, role) {
            (EVERYONE, BoardRole::Owner) => {
                return Err(Failure::bad_request("ownership goes to one user, not *"))
            }
            (u, BoardRole::Owner) if u == by => {}
            (u, _) if u == by => {
                return Err(Failure::bad_request(
                    "the owner hands over by granting owner to another user",
                ))
            }
            (u, BoardRole::Owner) => {
                self.roles.insert(by.to_string(), BoardRole::Editor);
                changes.insert(by.to_string(), BoardRole::Editor);
                self.roles.insert(u.to_string(), BoardRole::Owner);
                changes.insert(u.to_string(), BoardRole::Owner);
            }
            (u, role) => {
                self.roles.insert(u.to_string(), role);
                changes.insert(u.to_string(), role);
            }
        }
        Ok(())
    }

    /// Every role as `joined` shows it: named users and `*`.
    pub fn roles(&self) -> BTreeMap<&str, BoardRole> {
        let mut all: BTreeMap<&str, BoardRole> =
            self.roles.iter().map(|(u, r)| (u.as_str(), *r)).collect();
        all.entry(EVERYONE).or_insert(DEFAULT_ROLE);
        all
    }

    /// The named roles, as stored.
    pub fn stored_roles(&self) -> &BTreeMap<String, BoardRole> {
        &self.roles
    }

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
        if current.is_none() && self.widgets.len() >= MAX_WIDGETS {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!("a board holds at most {MAX_WIDGETS} widgets"),
            ));
        }
        let id = widget.id.clone();
        let v = current.unwrap_or(0) + 1;
        let new = VersionedWidget { widget, v };
        let old = self.widgets.get(&id).map_or(0, size);
        let bytes = self.bytes - old + size(&new);
        if bytes > MAX_BOARD_BYTES {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!("a board's widgets take at most {MAX_BOARD_BYTES} bytes encoded"),
            ));
        }
        self.bytes = bytes;
        self.widgets.insert(id.clone(), new);
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

    /// Moves the widgets that exist by one offset, each once; returns the
    /// ids moved. A widget the offset would take out of bounds refuses the
    /// whole move, which then changes nothing.
    pub fn shift(&mut self, ids: &[String], dx: f64, dy: f64) -> Result<Vec<String>, Failure> {
        let mut ids: Vec<&String> = ids.iter().collect();
        ids.sort();
        ids.dedup();
        let out = ids
            .iter()
            .filter_map(|id| self.widgets.get(*id))
            .find(|w| !in_bounds(w.widget.x + dx) || !in_bounds(w.widget.y + dy));
        if let Some(w) = out {
            return Err(Failure::bad_request(format!(
                "the move takes widget {} past ±{MAX_COORD}",
                w.widget.id
            )));
        }
        let mut moved = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(w) = self.widgets.get_mut(id) {
                w.widget.x += dx;
                w.widget.y += dy;
                w.v += 1;
                moved.push(id.clone());
            }
        }
        Ok(moved)
    }

    /// Deletes the widgets that exist; returns the ids deleted.
    pub fn delete(&mut self, ids: &[String]) -> Vec<String> {
        let mut deleted = Vec::new();
        for id in ids {
            if let Some(w) = self.widgets.remove(id) {
                self.bytes -= size(&w);
                deleted.push(id.clone());
            }
        }
        deleted
    }

    /// What the widgets count for against the byte limit.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A board holding these widgets and roles.
    pub fn from_parts(widgets: Vec<VersionedWidget>, roles: BTreeMap<String, BoardRole>) -> Self {
        let bytes = widgets.iter().map(size).sum();
        Self {
            widgets: widgets
                .into_iter()
                .map(|w| (w.widget.id.clone(), w))
                .collect(),
            roles,
            bytes,
        }
    }

    /// A board holding these widgets.
    pub fn from_widgets(widgets: Vec<VersionedWidget>) -> Self {
        Self::from_parts(widgets, BTreeMap::new())
    }

    /// Applies a stored `board.changed` frame (when rebuilding from a log);
    /// other frames change nothing. Entries of a move carry only `id`, `x`,
    /// `y` and `v`.
    pub fn replay(&mut self, frame: &[u8]) {
        #[derive(Deserialize)]
        struct Changed {
            t: String,
            #[serde(default)]
            widgets: Vec<serde_json::Value>,
            #[serde(default)]
            deleted: Vec<String>,
            #[serde(default)]
            roles: BTreeMap<String, BoardRole>,
        }
        #[derive(Deserialize)]
        struct Moved {
            id: String,
            x: f64,
            y: f64,
            v: u64,
        }
        let Ok(changed) = serde_json::from_slice::<Changed>(frame) else {
            return;
        };
        if changed.t != "board.changed" {
            return;
        }
        for entry in changed.widgets {
            if entry.get("kind").is_some() {
                if let Ok(w) = serde_json::from_value::<VersionedWidget>(entry) {
                    self.bytes += size(&w);
                    if let Some(old) = self.widgets.insert(w.widget.id.clone(), w) {
                        self.bytes -= size(&old);
                    }
                }
            } else if let Ok(m) = serde_json::from_value::<Moved>(entry) {
                if let Some(w) = self.widgets.get_mut(&m.id) {
                    w.widget.x = m.x;
                    w.widget.y = m.y;
                    w.v = m.v;
                }
            }
        }
        for id in changed.deleted {
            if let Some(old) = self.widgets.remove(&id) {
                self.bytes -= size(&old);
            }
        }
        for (user, role) in changed.roles {
            self.roles.insert(user, role);
        }
    }

    /// How many widgets the board holds.
    pub fn len(&self) -> usize {
        self.widgets.len()
    }

    /// Whether the board holds no widget.
    pub fn is_empty(&self) -> bool {
        self.widgets.is_empty()
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
mod tests;
