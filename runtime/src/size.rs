//! Sizes in bytes as people write them: `512K`, `2M`, `1G` (binary units), or plain bytes.

/// Binary units a size may end with, largest first.
const UNITS: [(char, u32); 4] = [('T', 40), ('G', 30), ('M', 20), ('K', 10)];

/// Bytes, or a number followed by `K`, `M`, `G` or `T` (binary units); `None` if `text` is
/// neither, or too large.
pub fn parse(text: &str) -> Option<u64> {
    let (digits, shift) = match UNITS.iter().find(|(unit, _)| text.ends_with(*unit)) {
        Some((_, shift)) => (&text[..text.len() - 1], *shift),
        None => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A size in the largest unit that divides it (`1048576` is `1M`).
pub fn format(bytes: u64) -> String {
    UNITS
        .iter()
        .find(|(_, shift)| bytes > 0 && bytes.is_multiple_of(1 << shift))
        .map_or_else(
            || bytes.to_string(),
            |(unit, shift)| format!("{}{unit}", bytes >> shift),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_write_in_binary_units() {
        assert_eq!(parse("512"), Some(512));
        assert_eq!(parse("64K"), Some(64 << 10));
        assert_eq!(parse("2G"), Some(2 << 30));
        for bad in ["", "M", "1.5G", "-1", "1 G", "99999999999999999999T"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(format(1 << 20), "1M");
        assert_eq!(format(3 << 30), "3G");
        assert_eq!(format(1000), "1000");
        assert_eq!(format(0), "0");
    }
}
