-- The API's lists walk an index in their own order whatever their filter (issue 14), so a
-- rare filter value reads its rows instead of the whole table.
-- The booking of each listed offer (one probe per offer in the offer view).
CREATE INDEX bookings_offer ON bookings (offer_id, id) WHERE status <> 'cancelled';
-- GET /v1/bookings?status= and ?workshop=, newest first.
CREATE INDEX bookings_status ON bookings (status, id);
CREATE INDEX bookings_workshop_id ON bookings (workshop_id, id);
-- GET /v1/fleet/risk?workshop=: a workshop with few vehicles starts from them, not from a
-- walk down the whole ranking.
CREATE INDEX vehicle_profiles_home ON vehicle_profiles (home_workshop);
