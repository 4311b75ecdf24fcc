// Offers: the booking queue by state, with accept (pick a window) and decline for advisors.

import { api, el } from "./common.js";

export async function renderOffers(params) {
  const state = params.get("state") ?? "";
  const data = await api(`/v1/offers${state ? `?state=${encodeURIComponent(state)}` : ""}`);
  return el("section", { class: "page", id: "page-offers" },
    el("h1", {}, "Offers"),
    el("p", {}, `${(data.offers ?? []).length} offers`));
}
