//! Where a room's operations go: its owner on the ring and that node's
//! link, cached per connection while neither changes, and the link
//! version each node speaks.

use super::*;

/// Where a room's operations go, as of one version of the routes.
#[derive(Clone)]
pub(in crate::gateway) struct Route {
    version: u64,
    node: NodeId,
    writer: LinkWriter,
}

impl Route {
    /// The version of the routes it was taken at.
    #[cfg(test)]
    pub(super) fn version_seen(&self) -> u64 {
        self.version
    }
}

impl Upstream {
    /// The route to a room's owner: the cached one while nothing changed.
    pub(super) fn route(
        &self,
        room: &str,
        cached: Option<&mut Option<Route>>,
    ) -> Option<(NodeId, LinkWriter)> {
        let version = self.routes.load(Ordering::Acquire);
        let Some(cache) = cached else {
            return self.writer_to_owner(room);
        };
        if let Some(route) = cache {
            if route.version == version && !route.writer.is_closed() {
                return Some((route.node.clone(), route.writer.clone()));
            }
        }
        let (node, writer) = self.writer_to_owner(room)?;
        *cache = Some(Route {
            version,
            node: node.clone(),
            writer: writer.clone(),
        });
        Some((node, writer))
    }

    /// Routes changed: every cached route is checked again.
    pub(super) fn routes_changed(&self) {
        self.routes.fetch_add(1, Ordering::AcqRel);
    }

    /// The link protocol version spoken with `node`.
    pub(super) fn version_of(&self, node: &NodeId) -> u16 {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .get(node)
            .map_or(1, |l| l.version.load(Ordering::Acquire))
    }

    /// The owner of `key` and its link's writer, if the link is up.
    pub(super) fn writer_to_owner(&self, key: &str) -> Option<(NodeId, LinkWriter)> {
        let owner = self.ring.borrow().ring.owner_of(key)?.clone();
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&owner)?
            .clone();
        let writer = link
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        (!writer.is_closed()).then_some((owner, writer))
    }
}
