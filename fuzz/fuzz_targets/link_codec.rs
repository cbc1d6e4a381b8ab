//! Any bytes arriving on a link: split into records and decoded as either
//! direction's record, or refused with an error, never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roomring::link::{codec, FromNode, ToNode};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(record)) = codec::split_record(&mut buf) {
        let _ = codec::decode::<ToNode<'_>>(&record);
        let _ = codec::decode::<FromNode<'_>>(&record);
    }
});
