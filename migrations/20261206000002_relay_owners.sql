-- The relays' ownership sessions (engine v3, step 1; docs/delivery-engine.md, "Leases that
-- end with their relay"). Every running relay holds the advisory lock (1869968482, owner)
-- on a session of its own for as long as it runs, registers `owner` here, and puts it in
-- the first 32 bits of its claim tokens. A claim looks only at this handful of rows for
-- owners whose lock nobody holds (one lock probe each), releases their leases at once and
-- forgets them; the leases themselves are not scanned unless an owner is gone.
CREATE TABLE IF NOT EXISTS outbox_relay_owners (
    -- The lock's second key: the owner id's 32 bits as an int4.
    owner      integer PRIMARY KEY,
    relay_id   text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
