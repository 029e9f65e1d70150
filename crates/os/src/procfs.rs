//! Size fields of Linux's `/proc` files (`Key:   N kB` lines), for the memory figures of
//! the benchmarks and the memory-dependent choices of the server.

/// The field `key` (with its colon) of a `/proc` text, in bytes.
pub fn field_bytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The field `key` of the `/proc` file at `path`, in bytes (`None` where there is no such
/// file or field).
pub fn read_field_bytes(path: &str, key: &str) -> Option<u64> {
    field_bytes(&std::fs::read_to_string(path).ok()?, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_bytes() {
        let text = "Name:\tx\nVmHWM:\t  1234 kB\nRssAnon:\t 7 kB\nbad:\tkB\n";
        assert_eq!(field_bytes(text, "VmHWM:"), Some(1234 * 1024));
        assert_eq!(field_bytes(text, "RssAnon:"), Some(7 * 1024));
        assert_eq!(field_bytes(text, "bad:"), None);
        assert_eq!(field_bytes(text, "VmRSS:"), None);
    }
}
