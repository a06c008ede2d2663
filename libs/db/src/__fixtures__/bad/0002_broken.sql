-- Up Migration
CREATE TABLE gadgets (id int PRIMARY KEY);
SELECT no_such_function();
-- Down Migration
DROP TABLE gadgets;
