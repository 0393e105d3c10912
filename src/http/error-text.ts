/** The console's and the API's wording of a user-facing error: see messageForOthers. */
export { messageForOthers as httpErrorText } from '../core/errors.ts';
