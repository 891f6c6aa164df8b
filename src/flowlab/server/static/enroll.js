// Enrollment links (/join/<secret>): the person enrolls themselves, then the page runs as for a join link.
// A platform's participant id comes from the address the platform opened; a team invitation asks for a name once
// and remembers the token it got in this browser, so a reload or a second tab resumes as the same person.

import { ApiError, NetworkError } from "./api.js";

const TEAM_KEY = "flowlab.join.";

/** The secret of the enrollment link this page was opened from, or null on /annotate. */
export function linkSecret() {
  const m = window.location.pathname.match(/^\/join\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function call(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method, cache: "no-store", credentials: "omit",
      headers: body === undefined ? { Accept: "application/json" }
        : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new NetworkError(`Could not reach the flowlab server (${err?.message || err}).`);
  }
  const parsed = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

/** What the link is (its audience, its platform), or an ApiError saying why it cannot be used. */
export function linkInfo(secret) {
  return call("GET", `/v1/enroll/${encodeURIComponent(secret)}`);
}

/** A team member's token from an earlier visit through this link, if this browser has one. */
export function rememberedTeamToken(secret) {
  try {
    return localStorage.getItem(TEAM_KEY + secret);
  } catch {
    return null;
  }
}

/** Enrolls (or finds) the person: the platform's parameters from the address, or the `name` typed. */
export async function enroll(secret, info, name = null) {
  const params = Object.fromEntries(new URLSearchParams(window.location.search));
  const body = info.needs_name ? { name } : { params };
  const made = await call("POST", `/v1/enroll/${encodeURIComponent(secret)}`, body);
  if (info.needs_name) {
    try {
      localStorage.setItem(TEAM_KEY + secret, made.token);
    } catch {
      // storage disabled: this tab keeps the token for its session only
    }
  }
  return made;
}

/** Why a link cannot be used, in words for the person holding it: [title, text]. */
export function linkProblem(err) {
  if (err instanceof NetworkError) {
    return ["Can't reach the flowlab server", "The server did not answer. Check your connection and reload."];
  }
  const titles = {
    unknown_link: "This link doesn't work",
    link_revoked: "This link was withdrawn",
    link_expired: "This link has expired",
    link_exhausted: "This study is full",
    missing_participant: "Your participant id is missing",
    enroll_rate: "Many people are joining right now",
    revoked: "Your access was withdrawn",
  };
  return [titles[err.code] || "You can't join through this link", err.message];
}
