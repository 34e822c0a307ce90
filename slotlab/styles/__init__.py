"""Matplotlib style sheets shipped with slotlab: ``plt.style.use("slotlab.styles.paper")`` (matplotlib >= 3.7).

``slotlab.plot.paper_style()`` applies the same sheet on top of seaborn's paper context, scaled for projectors.
"""
