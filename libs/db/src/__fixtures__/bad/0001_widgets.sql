-- Up Migration
CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);
-- Down Migration
DROP TABLE widgets;
