//! Any text a client may send in a frame: parsed into a command or refused
//! with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = roomring::protocol::client::parse(text);
    }
});
