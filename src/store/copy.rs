//! PostgreSQL binary COPY encoding (`COPY .. FROM STDIN (FORMAT binary)`): a generic row
//! writer, and the sample row layout built on it.

use chrono::{DateTime, Utc};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Type OIDs of array elements, as the binary array format names them.
const INT4_OID: i32 = 23;
const FLOAT8_OID: i32 = 701;

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

/// Encodes `samples` rows for `COPY samples (vehicle_id, ts, seq, received_at, signal_ids,
/// signal_values)`.
pub struct SampleCopyEncoder {
    enc: CopyEncoder,
}

/// The column list `SampleCopyEncoder` writes, in its order.
pub const SAMPLE_COPY: &str = "COPY samples (vehicle_id, ts, seq, received_at, signal_ids, \
                               signal_values) FROM STDIN (FORMAT binary)";

impl SampleCopyEncoder {
    pub fn with_capacity(rows: usize, values: usize) -> Self {
        SampleCopyEncoder {
            enc: CopyEncoder::with_capacity(rows * 90 + values * 20),
        }
    }

    pub fn push(
        &mut self,
        vehicle_id: i32,
        ts: DateTime<Utc>,
        seq: i64,
        received_at: DateTime<Utc>,
        signal_ids: &[i32],
        values: &[f64],
    ) {
        let e = &mut self.enc;
        e.row(6);
        e.int4(vehicle_id);
        e.timestamptz(ts);
        e.int8(seq);
        e.timestamptz(received_at);
        e.int4_array(signal_ids);
        e.float8_array(values);
    }

    pub fn finish(self) -> Vec<u8> {
        self.enc.finish()
    }
}

impl CopyEncoder {
    /// A one-dimensional array without nulls; an empty one has no dimensions, as PostgreSQL
    /// writes `{}`. Longer than 2^31 elements cannot occur: samples are limited far below.
    fn array_header(&mut self, oid: i32, len: usize, elem_size: i32) {
        let n = i32::try_from(len).unwrap_or(i32::MAX);
        let dims = i32::from(n > 0);
        self.buf
            .extend_from_slice(&(12 + 8 * dims + n * (4 + elem_size)).to_be_bytes());
        self.buf.extend_from_slice(&dims.to_be_bytes());
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no nulls
        self.buf.extend_from_slice(&oid.to_be_bytes());
        if n > 0 {
            self.buf.extend_from_slice(&n.to_be_bytes());
            self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        }
    }

    pub fn int4_array(&mut self, values: &[i32]) {
        self.array_header(INT4_OID, values.len(), 4);
        self.buf.reserve(values.len() * 8);
        for v in values {
            self.buf.extend_from_slice(&4i32.to_be_bytes());
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn float8_array(&mut self, values: &[f64]) {
        self.array_header(FLOAT8_OID, values.len(), 8);
        self.buf.reserve(values.len() * 12);
        for v in values {
            self.buf.extend_from_slice(&8i32.to_be_bytes());
            self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_binary_copy_format() {
        let mut enc = SampleCopyEncoder::with_capacity(1, 2);
        let ts = DateTime::parse_from_rfc3339("2000-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        enc.push(7, ts, 9, ts, &[3, 5], &[1.5, -2.0]);
        let out = enc.finish();
        assert_eq!(&out[..11], b"PGCOPY\n\xff\r\n\0");
        let row = &out[19..];
        assert_eq!(&row[..2], &6i16.to_be_bytes());
        assert_eq!(&row[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&row[14..22], &1_000_000i64.to_be_bytes());
        // ids: length 12 + 8 + 2 * 8, one dimension, no nulls, int4, 2 elements from 1.
        let ids = &row[46..];
        assert_eq!(&ids[..4], &36i32.to_be_bytes());
        assert_eq!(&ids[4..8], &1i32.to_be_bytes());
        assert_eq!(&ids[12..16], &23i32.to_be_bytes());
        assert_eq!(&ids[16..24], &[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(&ids[24..32], &[0, 0, 0, 4, 0, 0, 0, 3]);
        let values = &ids[40..];
        assert_eq!(&values[..4], &(12i32 + 8 + 2 * 12).to_be_bytes());
        assert_eq!(&values[12..16], &701i32.to_be_bytes());
        assert_eq!(&values[24..28], &8i32.to_be_bytes());
        assert_eq!(&values[28..36], &1.5f64.to_bits().to_be_bytes());
        assert_eq!(&out[out.len() - 2..], &(-1i16).to_be_bytes());
        assert_eq!(out.len(), 19 + 2 + 8 + 12 + 12 + 12 + 40 + 48 + 2);
    }

    #[test]
    fn an_empty_array_has_no_dimensions() {
        let mut enc = CopyEncoder::with_capacity(0);
        enc.row(1);
        enc.int4_array(&[]);
        let out = enc.finish();
        let row = &out[19..];
        assert_eq!(&row[2..6], &12i32.to_be_bytes());
        assert_eq!(&row[6..10], &0i32.to_be_bytes());
        assert_eq!(&row[14..18], &23i32.to_be_bytes());
        assert_eq!(row.len(), 2 + 4 + 12 + 2);
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
