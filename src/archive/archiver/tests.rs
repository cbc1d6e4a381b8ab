use super::Pending;

#[test]
fn what_waits_is_counted_per_room_from_its_lowest_seq() {
    let pending = Pending::default();
    pending.add([("chat:a", 5), ("chat:a", 6), ("chat:a", 7)].into_iter());
    pending.add(std::iter::once(("chat:b", 1)));
    assert_eq!(pending.lowest("chat:a"), Some(5));
    pending.done([("chat:a", 5), ("chat:a", 6)].into_iter());
    assert_eq!(pending.lowest("chat:a"), Some(7));
    pending.done(std::iter::once(("chat:a", 7)));
    assert_eq!(pending.lowest("chat:a"), None, "all archived");
    assert_eq!(pending.lowest("chat:b"), Some(1));
    pending.done(std::iter::once(("chat:never", 3)));
    assert_eq!(pending.lowest("chat:never"), None);
}
