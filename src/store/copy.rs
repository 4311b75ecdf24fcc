//! PostgreSQL binary COPY encoding for telemetry rows (`COPY .. FROM STDIN (FORMAT binary)`).

use chrono::{DateTime, Utc};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Encodes (vehicle_id int4, signal_id int4, ts timestamptz, value float8) rows.
pub struct TelemetryCopyEncoder {
    buf: Vec<u8>,
}

impl TelemetryCopyEncoder {
    pub fn with_capacity(rows: usize) -> Self {
        let mut buf = Vec::with_capacity(19 + rows * 38 + 2);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        TelemetryCopyEncoder { buf }
    }

    pub fn push(&mut self, vehicle_id: i32, signal_id: i32, ts: DateTime<Utc>, value: f64) {
        let b = &mut self.buf;
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&vehicle_id.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&signal_id.to_be_bytes());
        b.extend_from_slice(&8i32.to_be_bytes());
        b.extend_from_slice(&(ts.timestamp_micros() - PG_EPOCH_OFFSET_MICROS).to_be_bytes());
        b.extend_from_slice(&8i32.to_be_bytes());
        b.extend_from_slice(&value.to_bits().to_be_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
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
}
