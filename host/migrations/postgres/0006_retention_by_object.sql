-- Retention removes destroyed objects together with their history, which it finds by object
-- (log_by_object, step_by_object, command_by_target); nothing looks history up by age any
-- more, so these indexes only slowed every insert down.
DROP INDEX log_by_time;
DROP INDEX step_by_time;
DROP INDEX command_consumed;
