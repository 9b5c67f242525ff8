-- How a router alias (routes file `routers:`) routed each chat call, as
-- ChatStart says it: the class the last user turn was put in ('default' for
-- the fallback), the model alias chosen and how it was decided (keyword,
-- embedding, classifier_model, classifier_fallback). '' for calls to a plain
-- model alias and for older rows.
ALTER TABLE request_log ADD COLUMN route_class TEXT NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN routed_model TEXT NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN route_decision TEXT NOT NULL DEFAULT '';

-- ListCalls by route class, and GetStats per route class, within a window.
CREATE INDEX request_log_by_route_class ON request_log (organisation, route_class, create_time)
    WHERE route_class <> '';
