DROP TABLE dead_letters;
DROP TRIGGER outbox_wake_relay ON outbox;
DROP FUNCTION outbox_notify();
DROP TABLE outbox;
DROP TABLE events;
DROP FUNCTION events_are_immutable();
