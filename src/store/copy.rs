//! PostgreSQL binary COPY encoding (`COPY .. FROM STDIN (FORMAT binary)`): a generic row
//! writer, and the telemetry row layout built on it.

use chrono::{DateTime, Utc};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Writes rows field by field; the caller keeps each row's field count and types in step with
/// the COPY's column list.
pub struct CopyEncoder {
    buf: Vec<u8>,
}

impl CopyEncoder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(19 + bytes + 2);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyEncoder { buf }
    }

    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub fn boolean(&mut self, v: bool) {
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(v));
    }

    pub fn int2(&mut self, v: i16) {
        self.buf.extend_from_slice(&2i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn int4(&mut self, v: i32) {
        self.buf.extend_from_slice(&4i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn int8(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn float8(&mut self, v: f64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    pub fn timestamptz(&mut self, v: DateTime<Utc>) {
        self.int8(v.timestamp_micros() - PG_EPOCH_OFFSET_MICROS);
    }

    /// UTF-8 text (binary format of text is its bytes). Longer than 2 GiB cannot occur here:
    /// payloads are limited far below that.
    pub fn text(&mut self, v: &str) {
        let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&v.as_bytes()[..len as usize]);
    }

    /// A nullable field: `field` writes the value when there is one.
    pub fn opt<T>(&mut self, v: Option<T>, field: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => field(self, v),
            None => self.null(),
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// Encodes (vehicle_id int4, signal_id int4, ts timestamptz, value float8) rows.
pub struct TelemetryCopyEncoder {
    enc: CopyEncoder,
}

impl TelemetryCopyEncoder {
    pub fn with_capacity(rows: usize) -> Self {
        TelemetryCopyEncoder {
            enc: CopyEncoder::with_capacity(rows * 38),
        }
    }

    pub fn push(&mut self, vehicle_id: i32, signal_id: i32, ts: DateTime<Utc>, value: f64) {
        let e = &mut self.enc;
        e.row(4);
        e.int4(vehicle_id);
        e.int4(signal_id);
        e.timestamptz(ts);
        e.float8(value);
    }

    pub fn finish(self) -> Vec<u8> {
        self.enc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_binary_copy_format() {
        let mut enc = TelemetryCopyEncoder::with_capacity(1);
        let ts = DateTime::parse_from_rfc3339("2000-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        enc.push(7, 9, ts, 1.5);
        let out = enc.finish();
        assert_eq!(&out[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(out.len(), 19 + 2 + 4 * 4 + 4 + 4 + 8 + 8 + 2);
        let row = &out[19..];
        assert_eq!(&row[..2], &4i16.to_be_bytes());
        assert_eq!(&row[6..10], &7i32.to_be_bytes());
        assert_eq!(&row[22..30], &1_000_000i64.to_be_bytes());
        assert_eq!(&out[out.len() - 2..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn nullable_text_bool_and_int2_fields() {
        let mut enc = CopyEncoder::with_capacity(0);
        enc.row(4);
        enc.opt(None::<&str>, CopyEncoder::text);
        enc.opt(Some("ab"), CopyEncoder::text);
        enc.boolean(true);
        enc.int2(-3);
        let out = enc.finish();
        let row = &out[19..];
        assert_eq!(&row[2..6], &(-1i32).to_be_bytes());
        assert_eq!(&row[6..12], &[0, 0, 0, 2, b'a', b'b']);
        assert_eq!(&row[12..17], &[0, 0, 0, 1, 1]);
        assert_eq!(&row[17..23], &[0, 0, 0, 2, 0xff, 0xfd]);
    }

    #[test]
    fn int8_fields_carry_their_length() {
        let mut enc = CopyEncoder::with_capacity(0);
        enc.row(1);
        enc.int8(-2);
        let out = enc.finish();
        let row = &out[19..];
        assert_eq!(&row[2..6], &8i32.to_be_bytes());
        assert_eq!(&row[6..14], &(-2i64).to_be_bytes());
    }
}
