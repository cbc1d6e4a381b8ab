//! The supervision of node links: one link task per node member of the
//! ring view, started and stopped as the view changes; each reports its
//! link up and down over a channel, and the supervisor alone installs and
//! removes the link's writer, so that a request in flight on a link that
//! dropped is routed again before any goes on the next one.

use super::*;
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

/// What a link task tells the supervisor.
pub(super) enum Report {
    /// The link is up: requests go on `writer`, of link `version`.
    Up {
        link: Arc<NodeLink>,
        writer: LinkWriter,
        version: u16,
    },
    /// The link to `node` dropped, or was ended here.
    Down { node: NodeId, link: Arc<NodeLink> },
}

/// Where link tasks report.
pub(super) type Reporter = mpsc::UnboundedSender<Report>;

/// The running link tasks, by node: its address, and the guard whose drop
/// stops it.
type Running = HashMap<NodeId, (String, DropGuard)>;

/// Which link tasks stop (their node left, or moved to another address)
/// and which start, for the node `members` of a view.
pub(super) fn plan(
    running: &HashMap<NodeId, String>,
    members: &HashMap<NodeId, String>,
) -> (Vec<NodeId>, Vec<(NodeId, String)>) {
    let mut stop: Vec<NodeId> = (running.iter())
        .filter(|(id, addr)| members.get(*id) != Some(*addr))
        .map(|(id, _)| id.clone())
        .collect();
    let mut start: Vec<(NodeId, String)> = (members.iter())
        .filter(|(id, addr)| running.get(*id) != Some(*addr))
        .map(|(id, addr)| (id.clone(), addr.clone()))
        .collect();
    stop.sort();
    start.sort();
    (stop, start)
}

impl Upstream {
    /// Keeps one link per node member until shutdown, and applies what the
    /// links report, to the last link down (what was in flight on it is
    /// answered then).
    pub(super) async fn supervise(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut ring = self.ring.clone();
        let (report, mut reports) = mpsc::unbounded_channel();
        let mut running = Running::new();
        'views: loop {
            let view = ring.borrow_and_update().clone();
            self.follow(&view, &mut running, &report, &shutdown);
            loop {
                tokio::select! {
                    changed = ring.changed() => match changed {
                        Ok(()) => break,
                        Err(_) => break 'views,
                    },
                    Some(report) = reports.recv() => self.on_report(report),
                    _ = shutdown.wait() => break 'views,
                }
            }
        }
        drop((running, report));
        while let Some(report) = reports.recv().await {
            self.on_report(report);
        }
    }

    /// Starts and stops link tasks for the node members of `view`.
    fn follow(
        self: &Arc<Self>,
        view: &RingView,
        running: &mut Running,
        report: &Reporter,
        shutdown: &Shutdown,
    ) {
        let members: HashMap<NodeId, String> = (view.view.with_role(Role::Node))
            .map(|m| (m.id.clone(), m.addr.clone()))
            .collect();
        let addrs = running
            .iter()
            .map(|(id, (addr, _))| (id.clone(), addr.clone()))
            .collect();
        let (stop, start) = plan(&addrs, &members);
        for id in stop {
            running.remove(&id);
        }
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| running.contains_key(id));
        for (id, addr) in start {
            let (stops, guard) = shutdown.child();
            let link = Arc::new(NodeLink {
                writer: Mutex::new(None),
                version: std::sync::atomic::AtomicU16::new(1),
            });
            self.links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), link.clone());
            let span = tracing::debug_span!("upstream", node.id = %id);
            let task =
                (self.clone()).keep_link(id.clone(), addr.clone(), link, report.clone(), stops);
            self.tasks.spawn(task.instrument(span));
            running.insert(id, (addr, guard));
        }
        self.routes_changed();
        self.resume_moved(None);
    }

    /// A link came up (its writer takes requests) or went down (what was
    /// in flight on it is routed again, and its rooms resumed).
    fn on_report(self: &Arc<Self>, report: Report) {
        match report {
            Report::Up {
                link,
                writer,
                version,
            } => {
                link.version.store(version, Ordering::Release);
                *link.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
                self.routes_changed();
            }
            Report::Down { node, link } => {
                link.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
                self.routes_changed();
                self.fail_pending(&node);
                self.resume_moved(Some(&node));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &str)]) -> HashMap<NodeId, String> {
        (list.iter())
            .map(|(id, addr)| (NodeId::parse(id).unwrap(), addr.to_string()))
            .collect()
    }

    #[test]
    fn links_start_for_new_members_and_stop_for_those_gone_or_moved() {
        let running = members(&[("n1", "a:1"), ("n2", "a:2"), ("n3", "a:3")]);
        let view = members(&[("n1", "a:1"), ("n2", "b:2"), ("n4", "a:4")]);
        let (stop, start) = plan(&running, &view);
        let n = |id: &str| NodeId::parse(id).unwrap();
        assert_eq!(stop, [n("n2"), n("n3")]);
        assert_eq!(
            start,
            [(n("n2"), "b:2".to_string()), (n("n4"), "a:4".to_string())]
        );
        assert_eq!(plan(&view, &view), (vec![], vec![]), "nothing changes");
    }
}
