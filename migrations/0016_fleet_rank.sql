-- The fleet ranking without a component walks every component's scores in risk order and
-- keeps each vehicle's riskiest: one page of index entries instead of sorting the fleet.
CREATE INDEX risk_current_p30 ON risk_current (p30 DESC, vehicle_id);
