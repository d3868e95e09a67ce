/** The translation bundle the tests pass: English, with %1-style substitution. */
import { nullTranslator } from '@jupyterlab/translation';

export const trans = nullTranslator.load('ai_console');
