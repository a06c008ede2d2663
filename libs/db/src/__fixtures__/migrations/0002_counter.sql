-- Up Migration
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
-- Down Migration
DROP TABLE counter;
