-- Every MySQL/MariaDB type the connectors map, with edge values: shared by the connector
-- tests and the change-capture tests. Needs sql_mode without NO_ZERO_DATE (zero dates).
CREATE TABLE types (
    id int NOT NULL PRIMARY KEY,
    ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
    mi mediumint, miu mediumint unsigned, i int, iu int(10) unsigned,
    bi bigint, biu bigint unsigned, b1 tinyint(1),
    d1 decimal(65,30), d2 decimal(10,2), d3 decimal(38,0), d4 decimal(5,5),
    f float, dbl double,
    vc varchar(100), tx text, ch char(5), bl blob, vb varbinary(20),
    dt date, dtm datetime(6), dt0 datetime, ts timestamp(6) NULL, tm time(6), tm0 time, yr year,
    js json, en enum('a','b''c','d e'), st set('x','y','z'), bt bit(8), bt1 bit(1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO types VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -99999999.99,
  -99999999999999999999999999999999999999, -0.99999,
  -3.40282e38, -1.7976931348623157e308, '', '', '', '', '',
  '1000-01-01', '1000-01-01 00:00:00.000000', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000000',
  '-838:59:59.000000', '-838:59:59', 1901, '[]', 'a', '', b'0', b'0'),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
  18446744073709551615, 1,
  '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99,
  99999999999999999999999999999999999999, 0.99999,
  3.40282e38, 1.7976931348623157e308,
  CONCAT('emoji \xF0\x9F\x98\x80 😀 tab', CHAR(9), 'nl', CHAR(10), 'cr', CHAR(13), 'bs\\ nul', CHAR(0), 'end \'q\' "dq"'),
  REPEAT('long text ü ', 500), 'abcde', x'00FF000A09', x'00',
  '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59', '2038-01-19 03:14:07.999999',
  '838:59:59.000000', '838:59:59', 2155, '{"a": [1, 2.50, "x"],  "b": null, "c": "😀"}',
  'b''c', 'x,z', b'11111111', b'1'),
 (3, -1, 1, -1, 1, -1, 1, -1, 1, -1, 9223372036854775808, 2,
  '0.000000000000000000000000000001', 0.01, 1, 0.00001,
  -0e0, -0e0, 'x', 'y', 'z', 'w', 'v',
  '0001-01-01', '0001-01-01 00:00:00.000001', '2024-02-29 12:34:56', '2024-02-29 12:34:56.123456',
  '100:00:00.500000', '-00:00:01', 2000, '{"n":1.0000000000000001}', 'd e', 'x,y,z', b'10101010', b'0'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.17549e-38, 2.2250738585072014e-308, 'a', 'b', 'c', 'd', 'e',
  '0000-00-00', '2024-00-10 00:00:00', '0000-00-00 00:00:00', NULL, '00:00:00', '00:00:00', 0, 'null', 'a', 'y', b'1', b'1');
