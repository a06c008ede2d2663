/**
 * English function words for the stop-word check (Gopher asks for at least
 * two of a handful; a wider list of very common function words is more
 * forgiving to short, well-formed records).
 */
export const ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set(
  (
    'a about after all also am an and any are as at be because been but by can could did do does for from ' +
    'had has have he her him his how i if in into is it its me my no not now of on one or our out she so ' +
    'some than that the their them then there these they this to up us was we were what when where which ' +
    'who will with would you your'
  ).split(' '),
);
