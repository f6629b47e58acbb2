#!/usr/bin/env python3
"""Writes the tiny CSV sample of README's "Train on your own data" (ads-*.csv, deterministic).

A user clicks more often on ads of the category they like, and on cheap ones; their history
holds the ads they clicked before. Run it again to regenerate the files byte for byte."""
import math
import random

rng = random.Random(7)
users = [{"likes": rng.randrange(8), "history": []} for _ in range(60)]


def row():
    u = rng.randrange(len(users))
    user = users[u]
    ad = rng.randrange(120)
    category = ad % 8
    price = round(rng.lognormvariate(2.5, 1.0), 2)
    logit = -1.0 + 1.5 * (category < 2) + 2.0 * (category == user["likes"]) - 0.5 * math.log1p(price)
    logit += 0.8 * any(h % 8 == category for h in user["history"][-3:])
    clicked = int(rng.random() < 1 / (1 + math.exp(-logit)))
    history = "|".join(str(h) for h in user["history"][-5:])
    shown_price = "" if rng.random() < 0.05 else f"{price}"
    line = f'{clicked},{u},{ad},cat{category},{shown_price},{rng.randrange(24)},"{history}"'
    if clicked:
        user["history"].append(ad)
    return line


header = "clicked,user,ad,category,price,hour,history"
for name, count in [("ads-train.csv", 5000), ("ads-valid.csv", 1000), ("ads-test.csv", 1000)]:
    with open(name, "w") as f:
        f.write(header + "\n")
        for _ in range(count):
            f.write(row() + "\n")
