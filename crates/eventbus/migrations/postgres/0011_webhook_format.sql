-- What each webhook request carries: the event's JSON (`json`), a structured CloudEvent
-- (`cloudevents`) or a CloudEvent in binary mode (`cloudevents-binary`).
ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'json';
