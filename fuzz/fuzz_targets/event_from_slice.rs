//! `Event::from_slice` on any body: an error or an event (never a panic), and what decodes
//! re-encodes to JSON that decodes to the same event (decoding is lossless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use terra_sink::model::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = Event::from_slice(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&event).expect("a decoded event re-encodes");
    let again = Event::from_slice(&encoded).expect("a re-encoded event decodes");
    let reencoded = serde_json::to_vec(&again).expect("re-encodes again");
    assert_eq!(encoded, reencoded, "decode/encode is stable");
    assert_eq!(event.type_name(), again.type_name());
});
