-- Reads over the sample table, on every flavour.

-- Every stored sample, whatever layout holds it. While a layout migration is under way, rows
-- still in the old tables appear grouped per (vehicle, instant) with seq -1; once they are all
-- moved, the service redefines this view as the sample table alone and drops the old tables
-- (src/store/relayout.rs). Readers use this view, writers the table.
CREATE VIEW all_samples AS
    SELECT vehicle_id, ts, seq, signal_ids, signal_values FROM samples
    UNION ALL
    SELECT vehicle_id, ts, -1::bigint,
           array_agg(signal_id ORDER BY signal_id), array_agg(value ORDER BY signal_id)
    FROM telemetry_v1 GROUP BY vehicle_id, ts;

-- One row per signal value, as the old narrow table had it: for ad-hoc SQL and checks.
CREATE VIEW telemetry AS
    SELECT a.vehicle_id, u.signal_id, a.ts, a.seq, u.value
    FROM all_samples a
    CROSS JOIN LATERAL unnest(a.signal_ids, a.signal_values) AS u (signal_id, value);

-- The latest value of one signal of one vehicle, or null. Only vehicles known to send the
-- signal are searched, and not further back than the last day the rollup holds for it, so a
-- sparse signal costs a bounded scan.
CREATE FUNCTION signal_latest(p_vehicle integer, p_signal text)
RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT x.signal_values[array_position(x.signal_ids, s.id)]
    FROM signals s
    JOIN vehicle_signals vs ON vs.vehicle_id = p_vehicle AND vs.signal_id = s.id
    CROSS JOIN LATERAL (
        SELECT a.signal_ids, a.signal_values FROM all_samples a
        WHERE a.vehicle_id = p_vehicle AND a.signal_ids @> ARRAY[s.id]
          AND a.ts >= COALESCE((SELECT max(d.day) FROM signal_daily d
                                WHERE d.vehicle_id = p_vehicle AND d.signal_id = s.id),
                               '-infinity')
        ORDER BY a.ts DESC, a.seq DESC
        LIMIT 1) x
    WHERE s.name = p_signal
$$;

-- Keys of the old sample ledger among the given ones, while it exists: a message stored
-- before the layout migration and redelivered during it is a duplicate, not new.
CREATE FUNCTION aftercare_legacy_sample_keys(p_vehicle integer[], p_seq bigint[],
                                             p_ts timestamptz[])
RETURNS TABLE (vehicle_id integer, seq bigint, ts timestamptz) LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF to_regclass('samples_v1') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT l.vehicle_id, l.seq, l.ts
         FROM samples_v1 l JOIN unnest($1, $2, $3) AS k (v, s, t)
           ON l.vehicle_id = k.v AND l.seq = k.s AND l.ts = k.t'
        USING p_vehicle, p_seq, p_ts;
END
$$;

-- Retention deletes old days of the rollup and old dead letters by these.
CREATE INDEX signal_daily_day ON signal_daily (day);
CREATE INDEX dead_letters_last_received ON dead_letters (last_received);
