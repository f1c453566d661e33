-- Every PostgreSQL type the connector maps, with edge values (the batch round trip in
-- tests/postgres.rs and the change-capture one in crates/sluice/tests/cdc.rs).
CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s "happy"');
CREATE TABLE t (
  id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
  n50 numeric(50,10), nu numeric, n2 numeric(15,2), n100 numeric(100,3),
  f4 real, f8 double precision,
  tx text, vc varchar(44), ch char(5), by bytea, bo boolean,
  d date, tm time, ts timestamp, tsz timestamptz, ts3 timestamp(3), iv interval,
  u uuid, j json, jb jsonb, ai int[], at text[], an numeric(10,2)[], e mood,
  bt bit(8), vb varbit, m money, ip inet, tz timetz, x xml, c2 "char", nm name
);
INSERT INTO t VALUES
 (1, -32768, -2147483648, -9223372036854775808,
  '-1234567890123456789012345678901234567890.1234567891', 'NaN', -0.01, '1e95',
  'NaN', '-Infinity',
  E'a\U0001F600\x01\t\n"''\\ z', 'varchar ✓', 'ab', E'\\x00ff00', true,
  '4713-01-01 BC', '00:00:00', '4713-01-01 00:00:00.000001 BC', '4713-01-02 00:00:00.000001+00 BC',
  '2024-01-01 10:00:00.123', '-178000000 years -5 days -00:00:00.000001',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{ "a" :  [1, 2.50] }', '{"b": [1, "x"], "a": null}',
  '{1,NULL,-3}', '{"a",NULL,"b\"c",""}', '{1.50,NULL}', 'it''s "happy"',
  B'10100101', B'1', '$1.50', '192.168.0.1/24', '10:00:00+05:30', '<a>x</a>', 'q', 'nm'),
 (2, 32767, 2147483647, 9223372036854775807,
  '9999999999999999999999999999999999999999.9999999999', 'Infinity', 0, '-1e-3',
  'Infinity', '-0',
  '', '', '', E'\\x', false,
  'infinity', '24:00:00', '294276-12-31 23:59:59.999999', 'infinity',
  '-infinity', '1 mon 2 days 03:04:05.000006',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', '{}', 'sad',
  B'00000000', B'', '-$0.01', '::1', '00:00:00-12', '', ' ', ''),
 (3, 0, 0, 0, '0', '-Infinity', '0.00', '0', '-Infinity', 'NaN',
  ' ', ' x ', 'x', E'\\x00', NULL,
  '-infinity', '23:59:59.999999', 'infinity', '-infinity', '2000-01-01', '0',
  NULL, 'null', 'null', '{NULL}', '{NULL}', NULL, 'ok',
  NULL, B'1111111100000000111', NULL, NULL, NULL, NULL, NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL);
