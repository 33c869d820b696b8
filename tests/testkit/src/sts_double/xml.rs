//! AWS Query-protocol XML for STS responses and errors.

use time::OffsetDateTime;
use time::macros::format_description;

/// STS's XML namespace.
pub(crate) const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// IAM's XML namespace.
pub(crate) const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<ActionResponse><ActionResult>…</ActionResult><ResponseMetadata>…`; `result_inner` None
/// for actions without a result (IAM's EnableMFADevice, DeleteVirtualMFADevice…), which AWS
/// answers with the metadata alone.
pub(crate) fn success(
    ns: &str,
    action: &str,
    result_inner: Option<&str>,
    request_id: &str,
) -> String {
    let result = match result_inner {
        Some(inner) => format!("\n  <{action}Result>{inner}</{action}Result>"),
        None => String::new(),
    };
    format!(
        "<{action}Response xmlns=\"{ns}\">{result}\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n"
    )
}

/// `<ErrorResponse>` as STS sends it. Throttling and every other error are `Sender` faults
/// here (the double has no server-side failures).
pub(crate) fn error(ns: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{ns}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        escape(code),
        escape(message)
    )
}

/// A server-side (`Receiver`) fault, as STS sends with a 5xx.
pub(crate) fn server_error(code: &str, message: &str, request_id: &str) -> String {
    error(NS, code, message, request_id).replace("<Type>Sender</Type>", "<Type>Receiver</Type>")
}

/// A random request id shaped like AWS's (a UUID v4).
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS randomness");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = data_encoding::HEXLOWER.encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `2026-11-28T07:10:00Z`.
pub(crate) fn iso8601(unix: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_default()
}

/// HTTP `Date` header value (IMF-fixdate) for the double's clock.
pub(crate) fn http_date(unix: i64) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_default()
}
