//! A board's operations: put, move, shift, delete and role changes, each
//! one stored `board.changed` (or a refusal: `forbidden`, `conflict`,
//! bounds).

use super::*;

impl RoomState {
    pub(super) fn board_op(
        &mut self,
        by: &UserId,
        id: Option<&str>,
        op: &RoomOp<Bytes>,
    ) -> Result<Outcome, Failure> {
        let board = self
            .board
            .as_mut()
            .ok_or_else(|| Failure::bad_request("board operations need a board: room"))?;
        let mut roles = RoleChanges::new();
        if !matches!(op, RoomOp::BoardRole { .. }) {
            if board.role_of(by.as_str()) == BoardRole::Viewer {
                return Err(Failure::new(
                    ErrorCode::Forbidden,
                    "a viewer may not change the board",
                ));
            }
            board.claim(by.as_str(), &mut roles);
        }
        let (changed, deleted, moved_only) = change(board, by, op, &mut roles)?;
        let seq = self.seq + 1;
        let widgets = changed
            .iter()
            .filter_map(|w| board.get(w))
            .map(|w| {
                if moved_only {
                    WidgetEntry::Moved {
                        id: &w.widget.id,
                        x: w.widget.x,
                        y: w.widget.y,
                        v: w.v,
                    }
                } else {
                    WidgetEntry::Full(w)
                }
            })
            .collect();
        let frame = ServerFrame::BoardChanged {
            id,
            room: self.room.as_str(),
            seq,
            by: by.as_str(),
            widgets,
            deleted: deleted.iter().map(String::as_str).collect(),
            roles: (!roles.is_empty()).then_some(&roles),
        }
        .encode();
        Ok(Outcome {
            events: vec![self.store(frame.into(), None)],
            ..Outcome::default()
        })
    }
}

/// Applies a board operation: the widgets it changed, those it deleted,
/// and whether it only moved them.
fn change(
    board: &mut Board,
    by: &UserId,
    op: &RoomOp<Bytes>,
    roles: &mut RoleChanges,
) -> Result<(Vec<String>, Vec<String>, bool), Failure> {
    Ok(match op {
        RoomOp::BoardPut { widget, base } => {
            (vec![board.put(widget.clone(), *base)?], Vec::new(), false)
        }
        RoomOp::BoardMove { moves } => (board.apply_moves(moves), Vec::new(), true),
        RoomOp::BoardShift { ids, dx, dy } => (board.shift(ids, *dx, *dy)?, Vec::new(), true),
        RoomOp::BoardDelete { ids } => (Vec::new(), board.delete(ids), false),
        RoomOp::BoardRole { user, role } => {
            board.set_role(by.as_str(), user, *role, roles)?;
            (Vec::new(), Vec::new(), false)
        }
        _ => return Err(Failure::bad_request("not a board operation")),
    })
}
