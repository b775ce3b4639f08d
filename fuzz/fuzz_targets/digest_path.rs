//! Digest parsing and ref-name validation: what the server's routing applies to path segments.
//! A parsed digest prints back as its input; a refused one quotes at most 80 characters; a
//! valid ref name has no empty, `.` or `..` segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::proto::validate_ref_name;
use reprovm_sdk::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [HashKind::Blake3, HashKind::Sha256] {
        match Digest::parse_kind(kind, s) {
            Ok(d) => assert_eq!(d.to_hex(), s),
            Err(e) => assert!(e.to_string().len() < 1200),
        }
    }
    if validate_ref_name(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 512);
        assert!(
            s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
            "{s:?}"
        );
        assert!(!s.contains('\0') && !s.contains('\\'));
    }
});
