//! Why a message was refused: a stable machine-readable reason (metric label, dead-letter column)
//! and a human-readable detail.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidTopic,
    InvalidVin,
    VinMismatch,
    PayloadTooLarge,
    NotUtf8,
    InvalidJson,
    NonFiniteNumber,
    WrongType,
    MissingField,
    InvalidTimestamp,
    TimestampOutOfRange,
    InvalidSeq,
    EmptyBatch,
    BatchTooLarge,
    InvalidSignalName,
    InvalidDtcCode,
    DtcOutOfRange,
    InvalidDtcStatus,
    /// A string with a character the store cannot keep (NUL).
    InvalidText,
    /// Older than the store keeps (storage retention).
    PastRetention,
    /// A new signal name past the bound on distinct names in all.
    SignalLimit,
    /// A new signal name for a vehicle past the bound on distinct names per vehicle.
    VehicleSignalLimit,
    /// A tracker (a Traccar `uniqueId`, a feed's device id) the device register does not know
    /// and that sent no VIN of its own.
    UnknownDevice,
}

impl RejectReason {
    pub const ALL: [RejectReason; 23] = [
        RejectReason::InvalidTopic,
        RejectReason::InvalidVin,
        RejectReason::VinMismatch,
        RejectReason::PayloadTooLarge,
        RejectReason::NotUtf8,
        RejectReason::InvalidJson,
        RejectReason::NonFiniteNumber,
        RejectReason::WrongType,
        RejectReason::MissingField,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::InvalidSeq,
        RejectReason::EmptyBatch,
        RejectReason::BatchTooLarge,
        RejectReason::InvalidSignalName,
        RejectReason::InvalidDtcCode,
        RejectReason::DtcOutOfRange,
        RejectReason::InvalidDtcStatus,
        RejectReason::InvalidText,
        RejectReason::PastRetention,
        RejectReason::SignalLimit,
        RejectReason::VehicleSignalLimit,
        RejectReason::UnknownDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidTopic => "invalid_topic",
            RejectReason::InvalidVin => "invalid_vin",
            RejectReason::VinMismatch => "vin_mismatch",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NonFiniteNumber => "non_finite_number",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidSeq => "invalid_seq",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::BatchTooLarge => "batch_too_large",
            RejectReason::InvalidSignalName => "invalid_signal_name",
            RejectReason::InvalidDtcCode => "invalid_dtc_code",
            RejectReason::DtcOutOfRange => "dtc_out_of_range",
            RejectReason::InvalidDtcStatus => "invalid_dtc_status",
            RejectReason::InvalidText => "invalid_text",
            RejectReason::PastRetention => "past_retention",
            RejectReason::SignalLimit => "signal_limit",
            RejectReason::VehicleSignalLimit => "vehicle_signal_limit",
            RejectReason::UnknownDevice => "unknown_device",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}
