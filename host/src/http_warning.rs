//! The `Warning` header of the API's answers: a request done, with something its client should
//! know (a lease of a type no blueprint makes). Written `299 - "TEXT"` (RFC 7234's form for a
//! persistent warning, as Kubernetes' API sends them), encoded by the server and read back by
//! the CLI, which prints it as `warning: TEXT`.

use axum::http::HeaderValue;

/// The header's value for `text`: quoted, `"` and `\` escaped, anything but printable ASCII
/// replaced by `?` (a header carries nothing else).
pub fn header_value(text: &str) -> HeaderValue {
    let mut quoted = String::from("299 - \"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    HeaderValue::from_str(&quoted).expect("printable ASCII is a valid header value")
}

/// The text of a `Warning` header's value, if it is one of [`header_value`]'s form.
pub fn text(value: &HeaderValue) -> Option<String> {
    let quoted = value
        .to_str()
        .ok()?
        .strip_prefix("299 - \"")?
        .strip_suffix('"')?;
    let mut text = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            c => text.push(c),
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_reads_back_as_it_was_written() {
        for said in ["no blueprint makes \"hots\" resources", "a \\ b", ""] {
            let value = header_value(said);
            assert!(value.to_str().unwrap().starts_with("299 - \""), "{value:?}");
            assert_eq!(text(&value).as_deref(), Some(said));
        }
        assert_eq!(text(&header_value("é\n")).as_deref(), Some("??"));
        assert_eq!(text(&HeaderValue::from_static("199 x \"y\"")), None);
    }
}
