-- Wake the relay only when it is parked, so appending transactions do not serialise.
--
-- PostgreSQL makes every transaction that issued NOTIFY commit one at a time (it holds a
-- database-wide lock from before the commit record until after its flush), so a NOTIFY per
-- append, as the trigger below sent, turns group commit off for all writers. Instead, a relay
-- with nothing to do parks: it holds an exclusive advisory lock per partition it leads. An
-- append takes that lock shared until its transaction ends; only when it cannot (the relay is
-- parked) does it notify. So a relay can park only while no append is in flight, and it looks
-- at the outbox once more after parking: a commit that did not notify is never left waiting.
-- The append statement does this itself (store/append.rs), once per statement.
DROP TRIGGER outbox_wake_relay ON outbox;
DROP FUNCTION outbox_notify();
