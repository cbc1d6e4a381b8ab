//! The HTTP API's questions about a room, asked of its owner, and the
//! notifications and announcements relayed through a node.

use super::*;

impl Upstream {
    /// Asks a room's owner an HTTP API question, within `ANSWER_WITHIN`.
    pub(in crate::gateway) async fn query(
        &self,
        room: &RoomId,
        query: Query<&[u8]>,
    ) -> Result<Bytes, Failure> {
        let give_up = Instant::now() + ANSWER_WITHIN;
        let unavailable = || {
            Failure::new(
                ErrorCode::Unavailable,
                format!("{room} cannot be served right now; retry"),
            )
        };
        for attempt in 0.. {
            let overdue = Instant::now() >= give_up;
            let Some(pause) = retry::pause(attempt, Patience::UntilDue, overdue) else {
                break;
            };
            if let Some((owner, writer)) = self.writer_to_owner(room.as_str()) {
                let since_v4 = matches!(query, Query::Page { .. } | Query::Erase);
                if since_v4 && self.version_of(&owner) < 4 {
                    // Only during a rolling update: the owner's build pages
                    // no history.
                    return Err(unavailable());
                }
                let rid = self.ids.next();
                let (tx, rx) = oneshot::channel();
                let due = self.due(self.round());
                self.lock_pending()
                    .insert(rid, owner, due, Pending::Query(tx));
                let record = ToNode::Query {
                    rid,
                    room: room.as_str(),
                    query: query.clone().map_body(Raw::new),
                };
                if writer.send(&record).is_ok() {
                    match rx.await {
                        Ok((Status::Ok, answer)) => return Ok(answer),
                        Ok((Status::Moved, _)) => {}
                        Ok((Status::Failed(f), _)) => return Err(f),
                        // The link dropped with the request in flight: a read
                        // is asked again; a post may have been applied, so it
                        // is not sent twice.
                        Err(_) if !matches!(query, Query::Post { .. }) => {}
                        Err(_) => {
                            return Err(Failure::new(
                                ErrorCode::Unavailable,
                                "the room's node went away; retry",
                            ))
                        }
                    }
                } else {
                    self.lock_pending().take(rid);
                }
            }
            tokio::time::sleep(pause).await;
        }
        Err(unavailable())
    }

    /// Sends a notification through the node that owns the user's key; that
    /// node relays it to every gateway.
    pub(in crate::gateway) fn notify(&self, user: &str, body: &[u8]) -> Result<(), Failure> {
        let unreachable = || Failure::new(ErrorCode::Unavailable, "no node is reachable; retry");
        let (_, writer) = self
            .writer_to_owner(&format!("user:{user}"))
            .ok_or_else(unreachable)?;
        writer
            .send(&ToNode::Notify {
                user,
                body: Raw::new(body),
            })
            .map_err(|_| unreachable())
    }

    /// Sends an announcement for every connection of every gateway through
    /// one node (each node relays to every gateway linked to it).
    pub(in crate::gateway) fn broadcast(&self, body: &[u8]) -> Result<(), Failure> {
        let unreachable = || Failure::new(ErrorCode::Unavailable, "no node is reachable; retry");
        let (_, writer) = self.writer_to_owner("broadcast").ok_or_else(unreachable)?;
        writer
            .send(&ToNode::Broadcast {
                body: Raw::new(body),
            })
            .map_err(|_| unreachable())
    }
}
