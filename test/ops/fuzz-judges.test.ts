/**
 * The live fuzz suite is only as good as its judges: they must reject what a broken proxy
 * would send and accept every proper refusal.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeHttp, judgeSocks, socks5Command } from './fuzz-cases';
import { splitAt, httpStatus } from './wire-client';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('fuzz judges', () => {
  test('HTTP: refusals pass, successes and non-HTTP bytes fail', () => {
    assert.equal(judgeHttp(Buffer.alloc(0)), null);
    assert.equal(judgeHttp(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')), null);
    assert.equal(judgeHttp(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\n\r\n')), null);
    assert.match(judgeHttp(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'))!, /success/);
    assert.match(judgeHttp(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'))!, /success/);
    assert.match(judgeHttp(Buffer.from('garbage'))!, /not an HTTP status line/);
  });

  test('SOCKS: proper refusals pass, successes and malformed replies fail', () => {
    assert.equal(judgeSocks(hex('05ff')), null);
    assert.equal(judgeSocks(hex('0500 05 02 00 01 00000000 0000')), null);
    assert.equal(judgeSocks(hex('00 5b 0000 00000000')), null);
    assert.match(judgeSocks(hex('0500 05 00 00 01 7f000001 1f90'))!, /success/);
    assert.equal(judgeSocks(hex('0500 05 00 00 01 7f000001 1f90'), true), null);
    assert.match(judgeSocks(hex('00 5a 0000 00000000'))!, /success/);
    assert.match(judgeSocks(hex('0500 05 02'))!, /malformed/);
    assert.match(judgeSocks(hex('48545450'))!, /not SOCKS/);
    assert.match(judgeSocks(hex('05'))!, /truncated/);
  });

  test('SOCKS5 command byte and helpers', () => {
    assert.equal(socks5Command(hex('050100 05 03 00 01')), 3);
    assert.equal(socks5Command(hex('0502 0002 05 01')), 1);
    assert.equal(socks5Command(hex('0401')), null);
    assert.deepEqual(splitAt(Buffer.from('abcdef'), [4, 2, 2, 0, 9]).map(String), ['ab', 'cd', 'ef']);
    assert.equal(httpStatus(Buffer.from('HTTP/1.0 403 Forbidden\r\n')), 403);
    assert.equal(httpStatus(Buffer.from('nope')), null);
  });
});
