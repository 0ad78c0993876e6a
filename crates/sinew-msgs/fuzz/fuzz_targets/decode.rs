//! Every decoder must return Ok or Err on any input, never panic or over-allocate; what
//! decodes must re-encode to a payload that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinew_msgs::{Bytes, MessageKind};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    for kind in MessageKind::ALL {
        if let Ok(msg) = kind.decode(&payload) {
            let again = kind
                .decode(&Bytes::from(msg.to_cdr()))
                .expect("a decoded message re-encodes to a valid payload");
            // NaN != NaN, so compare encodings rather than values.
            assert_eq!(again.to_cdr(), msg.to_cdr());
        }
    }
});
