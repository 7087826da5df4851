-- Every replay an operator runs: who, when, with which filter, how many events.
CREATE TABLE IF NOT EXISTS outbox_replay_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replayed_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    filter      jsonb NOT NULL,
    event_count integer NOT NULL,
    event_ids   uuid[] NOT NULL
);
