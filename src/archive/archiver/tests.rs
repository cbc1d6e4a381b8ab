use super::Pending;

#[test]
fn what_waits_is_counted_per_room_from_its_lowest_seq() {
    let pending = Pending::default();
    pending.add("chat:a", [5, 6, 7].into_iter());
    pending.add("chat:b", std::iter::once(1));
    assert_eq!(pending.lowest("chat:a"), Some(5));
    pending.done("chat:a", 5);
    pending.done("chat:a", 6);
    assert_eq!(pending.lowest("chat:a"), Some(7));
    pending.done("chat:a", 7);
    assert_eq!(pending.lowest("chat:a"), None, "all archived");
    assert_eq!(pending.lowest("chat:b"), Some(1));
    pending.done("chat:never", 3);
    assert_eq!(pending.lowest("chat:never"), None);
}
