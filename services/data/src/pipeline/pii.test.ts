import { describe, expect, it } from 'vitest';
import { PiiKinds } from './config.ts';
import { cnIdValid, ibanValid, luhnValid, redactPii, verhoeffValid } from './pii.ts';

const all = [...PiiKinds];
const red = (t: string) => redactPii(t, all);

describe('pii', () => {
  it('pii - validators', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(ibanValid('GB82 WEST 1234 5698 7654 32')).toBe(true);
    expect(ibanValid('GB82 WEST 1234 5698 7654 33')).toBe(false);
    expect(ibanValid('DE89370400440532013000')).toBe(true);
    expect(cnIdValid('11010519491231002X')).toBe(true);
    expect(cnIdValid('110105194912310021')).toBe(false);
    expect(cnIdValid('11010519491331002X')).toBe(false); // month 13
    expect(verhoeffValid('2363')).toBe(true);
    expect(verhoeffValid('2364')).toBe(false);
  });

  it('pii - redacts each kind and counts it', () => {
    const cases: [string, string, string][] = [
      ['Mail jane.doe+news@example.co.uk today.', 'Mail <EMAIL> today.', 'email'],
      ['Call +44 20 7946 0958 now.', 'Call <PHONE> now.', 'phone'],
      ['Call (415) 555-0100 or 212-555-0147 or 212.555.0147.', 'Call <PHONE> or <PHONE> or <PHONE>.', 'phone'],
      ['Ring 020 7946 0958 or 07700 900123.', 'Ring <PHONE> or <PHONE>.', 'phone'],
      ['Server 192.168.1.20 is down.', 'Server <IP> is down.', 'ip'],
      ['Use 2001:db8::8a2e:370:7334 or fe80::1ff:fe23:4567:890a.', 'Use <IP> or <IP>.', 'ip'],
      ['Card 4111 1111 1111 1111 expired.', 'Card <CARD> expired.', 'card'],
      ['Card 4111-1111-1111-1111, amex 3782 822463 10005.', 'Card <CARD>, amex <CARD>.', 'card'],
      ['Pay to DE89 3704 0044 0532 0130 00 please.', 'Pay to <IBAN> please.', 'iban'],
      ['SSN 123-45-6789 on file.', 'SSN <ID> on file.', 'ssn'],
      ['NINO AB 12 34 56 C here.', 'NINO <ID> here.', 'nino'],
      ['SIN 046 454 286 on the form.', 'SIN <ID> on the form.', 'ca_sin'],
      ['Numbers 046-454-286 and 130-692-544.', 'Numbers <ID> and <ID>.', 'ca_sin'],
      ['Aadhaar 2345 6789 0124 linked.', 'Aadhaar <ID> linked.', 'in_aadhaar'],
    ];
    for (const [input, want, kind] of cases) {
      const r = red(input);
      expect(r.text, input).toBe(want);
      expect(Object.keys(r.counts), input).toEqual([kind]);
    }
  });

  it('pii - finds personal data inside Chinese text without word boundaries', () => {
    const r = red('我的手机号是13812345678，身份证号11010519491231002X，邮箱wang@example.cn。');
    expect(r.text).toBe('我的手机号是<PHONE>，身份证号<ID>，邮箱<EMAIL>。');
    expect(r.counts).toEqual({ phone: 1, cn_id: 1, email: 1 });
    expect(red('服务器地址192.168.0.1已经停止').text).toBe('服务器地址<IP>已经停止');
    expect(red('请拨打010-12345678或+86 138 1234 5678联系').text).toBe('请拨打<PHONE>或<PHONE>联系');
  });

  it('pii - leaves dates, versions, prices, ISBNs and other numbers alone', () => {
    const keep = [
      'The meeting is on 2024-01-15 at 12:30:45, or 15/01/2024, or 2024.01.15.',
      'Upgrade from v1.2.3 to 10.4.2 (build 2024.3) soon.',
      'It costs $1,299.99, €12.50 or ¥1999 and 1,000,000 units were sold.',
      'ISBN 978-3-16-148410-0, ISBN-13 9783161484100, ISBN 0-306-40615-2.',
      'Order 4111 1111 1111 1112 is not a valid card (Luhn fails).',
      'Account GB82 WEST 1234 5698 7654 33 has a bad checksum.',
      'Call 000-00-0000 is not an SSN, nor is 666-12-3456.',
      'The id 110105194912310021 has a wrong check digit.',
      'Population 1,402,112,000 in 2023; pi is 3.14159265358979.',
      'Use std::vector and a::b in C++, ratio 16:9, time 10:30.',
      'Call me at ext. 1234, room 12-34, page 123-456.',
      'Scores by round: 100 200 3000 and 123-456-7890 (no exchange starts with 1).',
      'Part numbers 046 454 287 and 2345 6789 0125 fail their check digits.',
      'Le budget est de 046 454 286 euros; timestamp 234567890124 ms.',
    ];
    for (const t of keep) expect(red(t), t).toEqual({ text: t, counts: {} });
  });

  it('pii - only redacts the kinds asked for', () => {
    const t = 'Mail a@b.example or call +1 415 555 0100.';
    expect(redactPii(t, ['email'])).toEqual({ text: 'Mail <EMAIL> or call +1 415 555 0100.', counts: { email: 1 } });
  });
});
