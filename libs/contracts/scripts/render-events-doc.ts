// Rewrites docs/events.md from the contracts registry.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderEventCatalogue } from '../src/catalogue.ts';

const target = fileURLToPath(new URL('../../../docs/events.md', import.meta.url));
writeFileSync(target, renderEventCatalogue());
console.log(`wrote ${target}`);
