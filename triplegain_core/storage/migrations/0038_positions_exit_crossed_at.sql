-- An exit the executor saw only later: when the market reached the exit's level while the
-- executor could not read it (its hot state out of reach). Such an exit filled at the first
-- price seen after, at closed_at; NULL for every exit acted on when it happened.

ALTER TABLE positions ADD COLUMN exit_crossed_at timestamptz;
